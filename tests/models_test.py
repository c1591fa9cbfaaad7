"""Tests for pix2pix_jax.models against NumPy transcriptions of the reference layers."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import models
from pix2pix_jax.models import conv, networks

# --- NumPy references (float64) ------------------------------------------------------------


def _np_conv(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
  """torch Conv2d semantics: out[i, j] = sum_{a,b} xpad[s*i + a, s*j + b] @ w[a, b]."""
  k = w.shape[0]
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  ho = (xp.shape[1] - k) // stride + 1
  wo = (xp.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], ho, wo, w.shape[-1]))
  for a in range(k):
    for b in range(k):
      patch = xp[:, a : a + stride * (ho - 1) + 1 : stride, b : b + stride * (wo - 1) + 1 : stride]
      out += patch @ w[a, b]
  return out


def _np_conv_transpose(x: np.ndarray, w: np.ndarray) -> np.ndarray:
  """torch ConvTranspose2d(k=4, s=2, p=1) by its scatter-add definition."""
  n, h, wd, _ = x.shape
  full = np.zeros((n, 2 * h + 2, 2 * wd + 2, w.shape[-1]))
  for a in range(4):
    for b in range(4):
      full[:, a : a + 2 * h : 2, b : b + 2 * wd : 2] += x @ w[a, b]
  return full[:, 1:-1, 1:-1]


def _np_batch_norm(x: np.ndarray, p: dict) -> np.ndarray:
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  return (x - mean) / np.sqrt(var + 1e-5) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def _leaky(x: np.ndarray) -> np.ndarray:
  return np.where(x > 0, x, 0.2 * x)


def _np_unet(params: dict, x: np.ndarray, num_downs: int) -> np.ndarray:
  """The reference U-Net, train-mode batch norm, no dropout, written recursively like torch.

  The reference's in-place LeakyReLU means the skip concatenates the activated block input.
  """

  def k(name):
    return np.asarray(params[name]["kernel"], np.float64)

  def block(level, h):
    if level > 0:
      h = _leaky(h)
    y = _np_conv(h, k(f"down{level}"), 2, 1)
    if 0 < level < num_downs - 1:
      y = _np_batch_norm(y, params[f"down_norm{level}"])
    if level < num_downs - 1:
      y = block(level + 1, y)
    y = _np_conv_transpose(np.maximum(y, 0), k(f"up{level}"))
    if level == 0:
      return np.tanh(y + np.asarray(params["up0"]["bias"]))
    y = _np_batch_norm(y, params[f"up_norm{level}"])
    return np.concatenate([h, y], axis=-1)

  return block(0, x.astype(np.float64))


def _normal(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale, jnp.float32)


# --- The convolutions ----------------------------------------------------------------------

TUNED = conv.ConvPolicy(form="cpu_tuned")

# Thresholds that force every transposed convolution (forward, and the stride-2 convolutions'
# input gradient) onto one formulation, and the stride-2 forward and kernel gradient onto the
# matmul form ("matmul") or XLA's convolution (the others).
_FORWARD_FORMS = {
  "plain": dict(matmul_max_pixels=0, down_matmul_max_pixels=0, phases_min_pixels=10**9),
  "matmul": dict(matmul_max_pixels=10**9, down_matmul_max_pixels=10**9, phases_min_pixels=10**9),
  "phases": dict(matmul_max_pixels=0, down_matmul_max_pixels=0, phases_min_pixels=0),
}


@pytest.fixture(params=list(_FORWARD_FORMS))
def forward_form(request) -> dict:
  """ConvPolicy thresholds forcing one forward formulation."""
  return {"min_features": 0, **_FORWARD_FORMS[request.param]}


@pytest.fixture(params=["batched", "per_image"])
def kernel_grad_form(request) -> dict:
  """ConvPolicy thresholds computing the stride-2 kernel gradient for the batch or by image."""
  if request.param == "per_image":
    return {"kgrad_split_min_pixels": 0}
  return {"kgrad_split_max_batch": 0}


def test_conv_down_matches_torch_definition():
  x, w = _normal(0, (2, 10, 8, 3)), _normal(1, (4, 4, 3, 5))
  got = conv.conv_down(x, w)
  np.testing.assert_allclose(got, _np_conv(np.asarray(x), np.asarray(w), 2, 1), atol=1e-5)


@pytest.mark.parametrize(
  "fn", [conv.conv_transpose, conv.conv_transpose_matmul, conv.conv_transpose_phases]
)
@pytest.mark.parametrize("shape", [(2, 5, 6, 3), (1, 1, 1, 3)])
def test_conv_transpose_forms_match_scatter_add(fn, shape):
  x, w = _normal(0, shape), _normal(1, (4, 4, 3, 4))
  got = jax.jit(fn)(x, w)
  assert got.shape == (shape[0], 2 * shape[1], 2 * shape[2], 4)
  np.testing.assert_allclose(got, _np_conv_transpose(np.asarray(x), np.asarray(w)), atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 6, 3), (1, 1, 1, 3)])
@pytest.mark.parametrize("form", ["cpu_tuned", "auto"])
def test_up_matches_scatter_add(shape, form, forward_form):
  policy = conv.ConvPolicy(form, **forward_form)
  x, w = _normal(0, shape), _normal(1, (4, 4, 3, 4))
  got = jax.jit(lambda x, w: conv.up(x, w, policy))(x, w)
  np.testing.assert_allclose(got, _np_conv_transpose(np.asarray(x), np.asarray(w)), atol=1e-5)


def _forward_form(x_shape: tuple[int, ...], cout: int) -> str:
  jaxpr = str(
    jax.make_jaxpr(lambda x, w: conv.up(x, w, TUNED))(
      jnp.zeros(x_shape), jnp.zeros((4, 4, x_shape[-1], cout))
    )
  )
  if "conv_general_dilated" not in jaxpr:
    return "matmul"
  return "plain" if "lhs_dilation=(2, 2)" in jaxpr else "phases"


def test_forward_form_chosen_by_shape():
  n = TUNED.matmul_max_pixels
  side = int(TUNED.phases_min_pixels**0.5)
  assert _forward_form((n, 1, 1, 8), 64) == "matmul"
  assert _forward_form((n + 1, 1, 1, 8), 64) == "plain"
  assert _forward_form((1, 1, 1, 8), 3) == "plain"
  assert _forward_form((1, side, side, 8), 64) == "phases"
  assert _forward_form((1, side, side, 8), 3) == "plain"


def test_policy_is_hashable_and_checked():
  assert hash(conv.ConvPolicy()) == hash(conv.ConvPolicy(form="auto"))
  assert conv.ConvPolicy(min_features=0) != conv.ConvPolicy()
  with pytest.raises(ValueError, match="unknown convolution form 'fast'"):
    conv.ConvPolicy(form="fast")


@pytest.mark.parametrize("form", ["cpu_tuned", "auto"])
def test_tuned_forms_under_an_explicit_batch_sharded_mesh(form, forward_form, kernel_grad_form):
  from pix2pix_jax import parallel

  policy = conv.ConvPolicy(form, **forward_form, **kernel_grad_form)
  mesh = parallel.make_mesh()
  x, w = _normal(0, (8, 2, 3, 8)), _normal(1, (4, 4, 8, 8))  # 2 images per device
  xs = jax.device_put(x, parallel.batch_sharding(mesh))
  ws = jax.device_put(w, parallel.replicated(mesh))

  def loss(x, w):
    up = conv.up(x, w, policy)
    return jnp.sum(conv.down(up, w, policy) ** 2), up

  (_, up), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(xs, ws)
  assert up.sharding.spec[0] == "data"
  (_, up_plain), grads_plain = jax.value_and_grad(
    lambda x, w: (
      jnp.sum(conv.conv_down(conv.conv_transpose(x, w), w) ** 2),
      conv.conv_transpose(x, w),
    ),
    (0, 1),
    has_aux=True,
  )(x, w)
  np.testing.assert_allclose(up, up_plain, atol=1e-5)
  for got, want in zip(grads, grads_plain, strict=True):
    # Gradients reach 1e4 here; float32 cancellation leaves about 1e-7 of that on small entries.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(jnp.abs(want).max()))


def test_down_equals_plain_with_gradients(forward_form, kernel_grad_form):
  policy = conv.ConvPolicy("cpu_tuned", **forward_form, **kernel_grad_form)
  x, w = _normal(0, (2, 8, 6, 5)), _normal(1, (4, 4, 5, 7))
  g = _normal(2, (2, 4, 3, 7))
  y_plain, vjp_plain = jax.vjp(conv.conv_down, x, w)
  y_tuned, vjp_tuned = jax.vjp(lambda x, w: conv.down(x, w, policy), x, w)
  np.testing.assert_allclose(y_tuned, y_plain, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(y_tuned, _np_conv(np.asarray(x), np.asarray(w), 2, 1), atol=1e-4)
  for plain, tuned in zip(vjp_plain(g), jax.jit(vjp_tuned)(g), strict=True):
    assert tuned.shape == plain.shape and tuned.dtype == plain.dtype
    np.testing.assert_allclose(tuned, plain, rtol=1e-5, atol=1e-4)


def test_up_gradients_equal_plain(forward_form, kernel_grad_form):
  policy = conv.ConvPolicy("cpu_tuned", **forward_form, **kernel_grad_form)
  x, w = _normal(0, (2, 6, 5, 7)), _normal(1, (4, 4, 7, 3))
  g = _normal(2, (2, 12, 10, 3))
  _, vjp_plain = jax.vjp(conv.conv_transpose, x, w)
  _, vjp_tuned = jax.vjp(lambda x, w: conv.up(x, w, policy), x, w)
  for plain, tuned in zip(vjp_plain(g), vjp_tuned(g), strict=True):
    assert tuned.shape == plain.shape and tuned.dtype == plain.dtype
    np.testing.assert_allclose(tuned, plain, rtol=1e-5, atol=1e-4)
  # And against finite differences of the scatter-add reference, along one random direction.
  dw = np.random.default_rng(3).normal(size=w.shape)
  eps = 1e-3
  num = (
    _np_conv_transpose(np.asarray(x, np.float64), np.asarray(w, np.float64) + eps * dw)
    - _np_conv_transpose(np.asarray(x, np.float64), np.asarray(w, np.float64) - eps * dw)
  ) / (2 * eps)
  np.testing.assert_allclose(
    np.sum(np.asarray(vjp_tuned(g)[1]) * dw), np.sum(num * np.asarray(g)), rtol=1e-4
  )


def test_up_second_use_under_jit_and_bf16():
  x, w = _normal(0, (1, 4, 4, 8)), _normal(1, (4, 4, 8, 8))

  def loss(policy, w):
    y = conv.up(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), policy)
    return jnp.sum(y.astype(jnp.float32) ** 2)

  plain = jax.jit(jax.grad(lambda w: loss(conv.ConvPolicy("plain"), w)))(w)
  tuned = jax.jit(jax.grad(lambda w: loss(TUNED, w)))(w)
  assert tuned.dtype == jnp.float32
  np.testing.assert_allclose(tuned, plain, rtol=0.05, atol=0.05 * float(jnp.abs(plain).max()))


def test_migrate_model_config():
  old = {"ngf": 64, "upsample": "fast"}
  assert conv.migrate_model_config(old) == {"ngf": 64, "conv": "auto"}
  assert old == {"ngf": 64, "upsample": "fast"}  # not changed in place
  assert conv.migrate_model_config({"upsample": "transpose"}) == {"conv": "plain"}
  assert conv.migrate_model_config({"conv": "cpu_tuned"}) == {"conv": "cpu_tuned"}
  assert conv.migrate_model_config({"upsample": "fast", "conv": "plain"}) == {"conv": "plain"}
  with pytest.raises(ValueError, match="model.upsample='nope'"):
    conv.migrate_model_config({"upsample": "nope"})


def _init(model, x: jax.Array) -> dict:
  return model.init(jax.random.key(0), x, train=False)


# --- The generator -------------------------------------------------------------------------


def _layers(policy: conv.ConvPolicy) -> dict:
  """The `down` and `up` module factories computing with `policy`."""
  return {
    "down": functools.partial(models.Downsample, policy=policy),
    "up": functools.partial(models.Upsample, policy=policy),
  }


def _small_generator(policy: conv.ConvPolicy | None = None, **kw) -> models.UNetGenerator:
  kw = {"num_downs": 5, "ngf": 8, **kw, **({} if policy is None else _layers(policy))}
  return models.UNetGenerator(output_channels=3, **kw)


def test_generator_matches_numpy_reference():
  gen = _small_generator(use_dropout=False, ngf=4)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  variables = _init(gen, x)
  got, _ = jax.jit(lambda v, x: gen.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  want = _np_unet(variables["params"], np.asarray(x), 5)
  assert got.shape == (2, 32, 32, 3) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_generator_tuned_equals_plain_outputs_and_gradients(forward_form):
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  target = _normal(1, (2, 32, 32, 3))
  fast = _small_generator(conv.ConvPolicy("cpu_tuned", **forward_form))
  plain = _small_generator(conv.ConvPolicy("plain"))
  variables = _init(fast, x)
  assert jax.tree.structure(variables) == jax.tree.structure(_init(plain, x))
  rngs = {"dropout": jax.random.key(1)}

  def loss(model, params, x):
    y, state = model.apply(
      {**variables, "params": params}, x, train=True, rngs=rngs, mutable=["batch_stats"]
    )
    return jnp.sum((y - target) ** 2), (y, state)

  def grads(model):
    return jax.jit(jax.value_and_grad(lambda p, x: loss(model, p, x), (0, 1), has_aux=True))(
      variables["params"], x
    )

  (lf, (yf, sf)), gf = grads(fast)
  (lp, (yp, sp)), gp = grads(plain)
  np.testing.assert_allclose(yf, yp, atol=1e-5)
  np.testing.assert_allclose(lf, lp, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), sf, sp)
  scale = max(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(gp))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-4 * scale), gf, gp)
  assert float(jnp.abs(gp[1]).max()) > 0  # the input gradient is really there


def test_generator_dropout_and_batch_stats():
  gen = models.UNetGenerator(output_channels=2, num_downs=6, ngf=4)  # dropout on level 4
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 1)), jnp.float32)
  variables = _init(gen, x)

  @jax.jit
  def train(key):
    return gen.apply(variables, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])

  (y1, s1), (y2, _) = train(jax.random.key(1)), train(jax.random.key(2))
  assert not np.allclose(y1, y2)  # dropout active
  assert jnp.all(jnp.abs(y1) <= 1)
  no_drop = models.UNetGenerator(output_channels=2, num_downs=6, ngf=4, use_dropout=False)
  a, _ = no_drop.apply(
    variables, x, train=True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"]
  )
  b, _ = no_drop.apply(
    variables, x, train=True, rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"]
  )
  np.testing.assert_array_equal(a, b)
  # Eval: running averages, no dropout, no rng, so each example is independent of the batch.
  ev = gen.apply(variables, x, train=False)
  np.testing.assert_allclose(ev[:1], gen.apply(variables, x[:1], train=False), atol=1e-6)
  # Training updates the running statistics (the update rule itself: see the next test).
  np.testing.assert_array_equal(variables["batch_stats"]["up_norm1"]["mean"], 0)
  assert float(jnp.abs(s1["batch_stats"]["up_norm1"]["mean"]).max()) > 0


def test_batch_norm_momentum_and_epsilon():
  disc = models.PixelDiscriminator(ndf=3)
  x = _normal(0, (4, 5, 5, 2))
  variables = _init(disc, x)
  _, state = disc.apply(variables, x, train=True, mutable=["batch_stats"])
  p = variables["params"]
  h = _leaky(
    np.asarray(x, np.float64) @ np.asarray(p["conv0"]["kernel"][0, 0]) + p["conv0"]["bias"]
  )
  h = h @ np.asarray(p["conv1"]["kernel"][0, 0])
  np.testing.assert_allclose(
    state["batch_stats"]["norm1"]["mean"], 0.1 * h.mean((0, 1, 2)), atol=1e-6
  )
  np.testing.assert_allclose(
    state["batch_stats"]["norm1"]["var"], 0.9 + 0.1 * h.var((0, 1, 2)), atol=1e-5
  )
  # Eval mode normalises with the running statistics and epsilon 1e-5.
  run = {"norm1": {"mean": np.full(6, 0.5), "var": np.full(6, 2.0)}}
  got = disc.apply({"params": p, "batch_stats": run}, x, train=False)
  n = (h - 0.5) / np.sqrt(2.0 + 1e-5) * np.asarray(p["norm1"]["scale"]) + p["norm1"]["bias"]
  np.testing.assert_allclose(got, _leaky(n) @ np.asarray(p["conv2"]["kernel"][0, 0]), atol=1e-5)


def test_instance_norm_has_no_affine_params_and_keeps_biases():
  gen = _small_generator(norm="instance")
  x = jnp.zeros((1, 32, 32, 1))
  variables = _init(gen, x)
  assert set(variables) == {"params"}
  params = variables["params"]
  assert not any("norm" in name for name in params)
  assert all("bias" in params[f"down{i}"] for i in range(5))
  assert all("bias" in params[f"up{i}"] for i in range(5))
  batch = _small_generator().init(jax.random.key(0), x, train=False)["params"]
  assert "bias" not in batch["down1"] and "bias" not in batch["up1"] and "bias" in batch["up0"]
  y1 = gen.apply(variables, x + _normal(0, x.shape), train=False)
  y2, _ = gen.apply(
    variables, x + _normal(0, x.shape), train=True, rngs={"dropout": jax.random.key(0)}, mutable=[]
  )
  assert y1.shape == (1, 32, 32, 3) and np.isfinite(np.asarray(y2)).all()


def test_init_statistics():
  gen = _small_generator()
  x = jnp.zeros((1, 32, 32, 1))
  params = _init(gen, x)["params"]
  kernels = np.concatenate([np.ravel(v["kernel"]) for v in params.values() if "kernel" in v])
  assert abs(kernels.mean()) < 1e-3 and abs(kernels.std() - 0.02) < 1e-3
  scales = np.concatenate([np.ravel(v["scale"]) for v in params.values() if "scale" in v])
  assert scales.size > 200 and abs(scales.mean() - 1) < 5e-3 and abs(scales.std() - 0.02) < 5e-3
  np.testing.assert_array_equal(params["up_norm1"]["bias"], 0)
  np.testing.assert_array_equal(params["up0"]["bias"], 0)


def test_bfloat16_compute_keeps_float32_params_and_output():
  gen32, gen16 = _small_generator(), _small_generator(dtype=jnp.bfloat16)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  variables = _init(gen16, x)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
  y16 = gen16.apply(variables, x, train=False)
  assert y16.dtype == jnp.float32
  np.testing.assert_allclose(y16, gen32.apply(variables, x, train=False), atol=0.05)
  grads = jax.jit(
    jax.grad(lambda p: jnp.sum(gen16.apply({**variables, "params": p}, x, train=False)))
  )(variables["params"])
  assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
  disc = models.PatchDiscriminator(ndf=8, dtype=jnp.bfloat16)
  dv = disc.init(jax.random.key(0), jnp.zeros((1, 32, 32, 4)), train=False)
  assert disc.apply(dv, jnp.ones((1, 32, 32, 4)), train=False).dtype == jnp.float32


# --- Discriminators ------------------------------------------------------------------------


def test_patch_discriminator_matches_numpy_reference():
  disc = models.PatchDiscriminator(ndf=4, n_layers=3)
  x = _normal(0, (2, 32, 32, 4))
  variables = _init(disc, x)
  got, _ = disc.apply(variables, x, train=True, mutable=["batch_stats"])
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  h = _leaky(_np_conv(np.asarray(x, np.float64), p["conv0"]["kernel"], 2, 1) + p["conv0"]["bias"])
  for n, stride in ((1, 2), (2, 2), (3, 1)):
    h = _leaky(_np_batch_norm(_np_conv(h, p[f"conv{n}"]["kernel"], stride, 1), p[f"norm{n}"]))
  want = _np_conv(h, p["conv4"]["kernel"], 1, 1) + p["conv4"]["bias"]
  assert got.shape == (2, 2, 2, 1) == want.shape  # 32 / 8 - 2
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_pixel_discriminator_shape():
  disc = models.PixelDiscriminator(ndf=8)
  x = _normal(0, (2, 16, 16, 3))
  variables = _init(disc, x)
  assert disc.apply(variables, x, train=False).shape == (2, 16, 16, 1)
  assert models.count_params(variables["params"]) == 3 * 8 + 8 + 8 * 16 + 2 * 16 + 16


# --- Full size (eval_shape only: cheap) ---------------------------------------------------


def _count(module, channels: int) -> int:
  shapes = jax.eval_shape(
    lambda: module.init(jax.random.key(0), jnp.zeros((1, 256, 256, channels)), train=False)
  )
  return models.count_params(shapes["params"])


def test_parameter_counts_equal_reference():
  """Full-size models, via jax.eval_shape; the numbers are the reference's."""
  assert _count(models.UNetGenerator(output_channels=3), 1) == 54_411_907
  assert _count(models.UNetGenerator(output_channels=2), 1) == 54_409_858
  assert _count(models.PatchDiscriminator(), 4) == 2_766_657
  assert _count(models.PatchDiscriminator(), 3) == 2_765_633
  disc = models.PatchDiscriminator()
  shapes = jax.eval_shape(
    lambda: disc.init(jax.random.key(0), jnp.zeros((1, 256, 256, 4)), train=False)
  )
  out = jax.eval_shape(lambda v: disc.apply(v, jnp.zeros((1, 256, 256, 4)), train=False), shapes)
  assert out.shape == (1, 30, 30, 1)


def test_factories_follow_config(make_tiny_config):
  config = make_tiny_config(
    **{
      "model.ngf": 8,
      "model.ndf": 8,
      "model.n_layers_d": 2,
      "model.dtype": "bfloat16",
      "model.conv": "plain",
      "color_space": "lab",
    }
  )
  gen = models.make_generator(config)
  assert gen.output_channels == 2 and gen.ngf == 8
  assert gen.down.keywords["policy"] == gen.up.keywords["policy"] == networks.conv_policy(config)
  assert networks.conv_policy(config).form == "plain"
  assert jnp.dtype(gen.dtype) == jnp.bfloat16
  config.color_space = "rgb"
  assert models.make_generator(config).output_channels == 3
  disc = models.make_discriminator(config)
  assert isinstance(disc, models.PatchDiscriminator) and disc.n_layers == 2 and disc.ndf == 8
  assert disc.down.keywords["policy"].form == "plain"
  config.model.discriminator = "pixel"
  assert isinstance(models.make_discriminator(config), models.PixelDiscriminator)
  config.model.discriminator = "nope"
  with pytest.raises(ValueError):
    models.make_discriminator(config)


# --- The "auto" policy ---------------------------------------------------------------------


def _program(compiled_text: str) -> str:
  """An XLA HLO module's computations, without source metadata (the tables of files, lines and
  stack frames, and each instruction's metadata)."""
  keep = ("HloModule", "%", "ENTRY", " ", "}")
  lines = [line for line in compiled_text.splitlines() if line.startswith(keep)]
  return re.sub(r", metadata=\{[^}\n]*\}", "", "\n".join(lines))


def test_auto_is_cpu_tuned_on_cpu():
  """On CPU "auto" compiles to the very program of "cpu_tuned": same outputs and gradients,
  bit for bit, and no conditional left of the platform choice."""
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  target = _normal(1, (2, 32, 32, 3))
  variables = _init(_small_generator(), x)

  def compiled(policy):
    gen = _small_generator(policy)

    def loss(params, x):
      y, state = gen.apply(
        {**variables, "params": params},
        x,
        train=True,
        rngs={"dropout": jax.random.key(1)},
        mutable=["batch_stats"],
      )
      return jnp.sum((y - target) ** 2), (y, state)

    fn = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))
    return fn.lower(variables["params"], x).compile()

  auto, tuned = compiled(conv.ConvPolicy("auto")), compiled(TUNED)
  assert "conditional" not in auto.as_text()
  assert _program(auto.as_text()) == _program(tuned.as_text())
  got, want = auto(variables["params"], x), tuned(variables["params"], x)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  # The tuned forms are really in use here (per-tap matmuls on the deepest levels).
  assert _program(tuned.as_text()).count(" dot(") > 0


def _exported_text(platform: str, dtype, grad: bool) -> str:
  """StableHLO of the default-size networks (default policy "auto") exported for `platform`:
  the generator's forward, or a GAN + L1 loss's value and parameter gradients through the
  generator and the PatchGAN discriminator. Shapes only: nothing is computed."""
  gen = models.UNetGenerator(output_channels=2, dtype=dtype)
  disc = models.PatchDiscriminator(dtype=dtype)
  x = jax.ShapeDtypeStruct((1, 256, 256, 1), jnp.float32)
  target = jax.ShapeDtypeStruct((1, 256, 256, 2), jnp.float32)
  g_vars = jax.eval_shape(lambda x: gen.init(jax.random.key(0), x, train=False), x)
  if not grad:
    fn, args = (lambda g_vars, x: gen.apply(g_vars, x, train=False)), (g_vars, x)
  else:
    pair = jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32)
    d_vars = jax.eval_shape(lambda p: disc.init(jax.random.key(0), p, train=False), pair)

    def loss(g_params, d_params, g_stats, d_stats, x, target):
      fake, _ = gen.apply(
        {"params": g_params, "batch_stats": g_stats},
        x,
        train=True,
        rngs={"dropout": jax.random.key(0)},
        mutable=["batch_stats"],
      )
      logits, _ = disc.apply(
        {"params": d_params, "batch_stats": d_stats},
        jnp.concatenate([x, fake], axis=-1),
        train=True,
        mutable=["batch_stats"],
      )
      return jnp.mean(jax.nn.softplus(-logits)) + 100 * jnp.mean(jnp.abs(fake - target))

    fn = jax.value_and_grad(loss, (0, 1))
    args = (g_vars["params"], d_vars["params"], g_vars["batch_stats"], d_vars["batch_stats"])
    args += (x, target)
  return jax.export.export(jax.jit(fn), platforms=[platform])(*args).mlir_module()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("platform", ["cuda", "tpu", "cpu"])
def test_auto_exports_plain_convolutions_for_gpu_and_tpu(platform, dtype):
  """The networks have no dense layers, so a dot_general can only come from a tuned form."""
  for grad in (False, True):
    text = _exported_text(platform, dtype, grad)
    assert "stablehlo.convolution" in text
    if platform == "cpu":
      assert "dot_general" in text
    else:
      assert "dot_general" not in text
      if not grad:  # the 8 up layers are XLA's own transposed convolution (lhs-dilated)
        assert text.count("lhs_dilate = [2, 2]") == 8


def test_parameter_trees_equal_for_every_policy(make_tiny_config):
  def tree(config, module, channels):
    x = jax.ShapeDtypeStruct((1, 32, 32, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)
    return [(jax.tree_util.keystr(p), v.shape) for p, v in jax.tree.leaves_with_path(variables)]

  def trees(form):
    config = make_tiny_config(**{"model.conv": form, "model.ngf": 8, "model.ndf": 8})
    gen, patch = models.make_generator(config), models.make_discriminator(config)
    config.model.discriminator = "pixel"
    pixel = models.make_discriminator(config)
    return tree(config, gen, 1), tree(config, patch, 3), tree(config, pixel, 3)

  auto = trees("auto")
  assert ("['params']['up0']['kernel']", (4, 4, 16, 2)) in auto[0]
  assert ("['params']['conv2']['kernel']", (4, 4, 16, 32)) in auto[1]
  assert trees("plain") == auto and trees("cpu_tuned") == auto
