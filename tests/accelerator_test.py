"""Accelerators, checked on CPU: the train step lowered for GPU and TPU, and bfloat16 mixed
precision that trains like float32."""

import collections
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import short_training

from pix2pix_jax import metrics, parallel
from pix2pix_jax.tools import shapes
from pix2pix_jax.train import step as train_step

# --- The jit'd train step, exported for cuda and tpu ----------------------------------------


@functools.cache
def _exported_step(platform: str, dtype: str, conv: str) -> jax.export.Exported:
  """`train_step.compile_step` at the paper's shapes (256x256, unet_256 ngf 64, 70x70 PatchGAN,
  batch 4 over the 4 test devices), exported for `platform` from abstract shapes only."""
  config = shapes.paper_config()
  config.model.dtype, config.model.conv = dtype, conv
  nets = train_step.make_networks(config, steps_per_epoch=1000)
  mesh = parallel.make_mesh()
  replicated = parallel.replicated(mesh)

  def place(x, sharding):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)

  state = jax.eval_shape(lambda key: train_step.init_state(nets, key, 256), jax.random.key(0))
  state = jax.tree.map(lambda x: place(x, replicated), state)
  batch = {"image": jax.ShapeDtypeStruct((4, 256, 256, 3), jnp.uint8)}
  batch = {"image": place(batch["image"], parallel.batch_sharding(mesh))}
  key = place(jax.eval_shape(lambda: jax.random.key(0)), replicated)
  step = train_step.compile_step(nets, mesh)
  return jax.export.export(step, platforms=[platform])(state, batch, key)


def _convolutions(text: str) -> collections.Counter:
  """Each stablehlo.convolution's window and operand/result types, counted."""
  found = re.findall(r"stablehlo\.convolution\(.*?(window = \{[^}]*\}).*?: (\(.*?\) -> \S+)", text)
  return collections.Counter(found)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_the_train_step_lowers_to_xla_convolutions_for_gpu_and_tpu(platform, dtype):
  """The default policy ("auto") gives the accelerator programs the very convolutions of
  "plain" (XLA's own, 4x4 kernels, lhs-dilated transposed ones), in the compute dtype, and no
  per-tap matmul (the networks have no dense layer, so any dot_general would be one)."""
  exported = _exported_step(platform, dtype, "auto")
  text = exported.mlir_module()
  convolutions = _convolutions(text)
  assert "dot_general" not in text
  assert convolutions == _convolutions(_exported_step(platform, dtype, "plain").mlir_module())
  # Forward and backward of 16 generator and 5 discriminator convolutions (D runs 3 times).
  assert sum(convolutions.values()) > 80
  element = {"float32": "f32", "bfloat16": "bf16"}[dtype]
  for _, types in convolutions:
    assert types.endswith(f"x{element}>"), types
  # Mixed precision: the state goes in and comes out float32, and so do the metrics.
  state_out, metrics_out = jax.tree.unflatten(exported.out_tree, exported.out_avals)
  state_dtypes = {x.dtype for x in jax.tree.leaves(state_out)}
  assert state_dtypes == {jnp.dtype(jnp.float32), jnp.dtype(jnp.int32)}
  assert all(x.dtype == jnp.float32 for x in metrics_out.values())
  assert exported.nr_devices == 4 and exported.platforms == (platform,)


# --- bfloat16 mixed precision trains like float32 ---------------------------------------------

STEPS = 60


@pytest.fixture(scope="module")
def runs():
  """60 steps of float32 and of bfloat16 training from the same seed on the embedded photos
  (17 train, 4 eval) at 32x32, U-Net num_downs 5, widths 8, batch 4, with the paper's losses
  and optimiser, random crops and flips: {dtype: (config, nets, state, history, eval)}."""
  out = {}
  for dtype in ("float32", "bfloat16"):
    config = short_training.overfit_config(
      None,
      size=32,
      **{
        "data.source": "samples",
        "data.load_size": 36,
        "data.flip": True,
        "model.num_downs": 5,
        "model.ngf": 8,
        "model.ndf": 8,
        "model.dtype": dtype,
      },
    )
    nets, state, history = short_training.train(config, STEPS)
    values = short_training.eval_metrics(config, nets, state.generator_variables)
    out[dtype] = (config, nets, state, history, values)
  return out


@pytest.mark.slow
def test_bfloat16_keeps_parameters_optimiser_state_statistics_and_losses_float32(runs):
  _, _, state, history, values = runs["bfloat16"]
  for path, leaf in jax.tree.leaves_with_path(state):
    name = jax.tree_util.keystr(path)
    # The integers are the step and Adam's update counts.
    want = jnp.int32 if name == ".step" or name.endswith(".count") else jnp.float32
    assert leaf.dtype == want, name
  assert state.g_batch_stats and state.d_batch_stats
  assert all(v.dtype == np.float32 for v in history.values())
  assert values["predicted"].dtype == np.float32


@pytest.mark.slow
def test_bfloat16_training_matches_float32(runs):
  """Same seed, same batches: the losses follow the same course and the eval metrics agree.

  Tolerances (in brackets the differences measured over 100 steps): each 20-step mean of the
  GAN losses within 10% (up to 3%), of the L1 loss within 3% (under 1%); eval CIEDE2000 within
  5% (2%), PSNR within 0.5 dB (0.3), SSIM within 0.01 (0.004).
  """
  fp32, bf16 = runs["float32"][3], runs["bfloat16"][3]
  for name, tolerance in (("d_loss", 0.1), ("g_gan", 0.1), ("g_l1", 0.03)):
    want = fp32[name].reshape(-1, 20).mean(1)
    got = bf16[name].reshape(-1, 20).mean(1)
    np.testing.assert_allclose(got, want, rtol=tolerance, err_msg=name)
  # Both learn: the L1 loss falls over the run.
  for history in (fp32, bf16):
    assert history["g_l1"][-20:].mean() < 0.95 * history["g_l1"][:20].mean()
  want, got = runs["float32"][4]["model"], runs["bfloat16"][4]["model"]
  assert got["ciede2000"].mean() == pytest.approx(want["ciede2000"].mean(), rel=0.05)
  assert got["psnr"].mean() == pytest.approx(want["psnr"].mean(), abs=0.5)
  assert got["ssim"].mean() == pytest.approx(want["ssim"].mean(), abs=0.01)


@pytest.mark.slow
def test_bfloat16_inference_matches_float32_by_psnr(runs):
  """The float32-trained generator run in bfloat16 colours the eval photos like float32: PSNR
  of the sRGB outputs above 48 dB, i.e. an RMS difference under one 8-bit step (1/255), so that
  the saved 8-bit images are nearly identical (measured 76-81 dB)."""
  config, _, state, _, fp32 = runs["float32"]
  bf16_config = runs["bfloat16"][0]
  assert bf16_config.model.dtype == "bfloat16" and config.model.dtype == "float32"
  bf16_nets = runs["bfloat16"][1]
  bf16 = short_training.eval_metrics(bf16_config, bf16_nets, state.generator_variables)
  got, want = jnp.asarray(bf16["predicted"]), jnp.asarray(fp32["predicted"])
  assert not np.array_equal(got, want)  # bfloat16 really computed something else
  psnr = np.asarray(metrics.psnr(got, want))
  assert psnr.shape == (4,) and (psnr > 48).all(), psnr
