"""Tests for pix2pix_jax.models against NumPy transcriptions of the reference layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pix_jax import models

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


def test_conv_down_matches_torch_definition():
  x, w = _normal(0, (2, 10, 8, 3)), _normal(1, (4, 4, 3, 5))
  got = models.conv_down(x, w)
  np.testing.assert_allclose(got, _np_conv(np.asarray(x), np.asarray(w), 2, 1), atol=1e-5)


@pytest.fixture(params=["plain", "matmul", "phases"])
def forward_form(request, monkeypatch):
  """Forces the fast transposed convolution's forward onto one of its formulations."""
  monkeypatch.setattr(models, "MIN_FEATURES", 0)
  matmul = 10**9 if request.param == "matmul" else 0
  monkeypatch.setattr(models, "MATMUL_MAX_PIXELS", matmul)
  monkeypatch.setattr(models, "DOWN_MATMUL_MAX_PIXELS", matmul)
  monkeypatch.setattr(models, "PHASES_MIN_PIXELS", 0 if request.param == "phases" else 10**9)
  jax.clear_caches()  # the form is chosen at trace time
  yield request.param
  jax.clear_caches()


@pytest.fixture(params=["batched", "per_image"])
def kernel_grad_form(request, monkeypatch):
  """Forces the stride-2 kernel gradient to be computed for the batch or image by image."""
  if request.param == "per_image":
    monkeypatch.setattr(models, "KGRAD_SPLIT_MIN_PIXELS", 0)
  else:
    monkeypatch.setattr(models, "KGRAD_SPLIT_MAX_BATCH", 0)
  jax.clear_caches()
  yield request.param
  jax.clear_caches()


@pytest.mark.parametrize(
  "fn",
  [
    models.conv_transpose,
    models.conv_transpose_matmul,
    models.conv_transpose_phases,
    models.conv_transpose_fast,
  ],
)
@pytest.mark.parametrize("shape", [(2, 5, 6, 3), (1, 1, 1, 3)])
def test_conv_transpose_matches_scatter_add(fn, shape, forward_form):
  x, w = _normal(0, shape), _normal(1, (4, 4, 3, 4))
  got = jax.jit(fn)(x, w)
  assert got.shape == (shape[0], 2 * shape[1], 2 * shape[2], 4)
  np.testing.assert_allclose(got, _np_conv_transpose(np.asarray(x), np.asarray(w)), atol=1e-5)


def _forward_form(x_shape: tuple[int, ...], cout: int) -> str:
  jaxpr = str(
    jax.make_jaxpr(models.conv_transpose_fast)(
      jnp.zeros(x_shape), jnp.zeros((4, 4, x_shape[-1], cout))
    )
  )
  if "conv_general_dilated" not in jaxpr:
    return "matmul"
  return "plain" if "lhs_dilation=(2, 2)" in jaxpr else "phases"


def test_forward_form_chosen_by_shape():
  n = models.MATMUL_MAX_PIXELS
  side = int(models.PHASES_MIN_PIXELS**0.5)
  assert _forward_form((n, 1, 1, 8), 64) == "matmul"
  assert _forward_form((n + 1, 1, 1, 8), 64) == "plain"
  assert _forward_form((1, 1, 1, 8), 3) == "plain"
  assert _forward_form((1, side, side, 8), 64) == "phases"
  assert _forward_form((1, side, side, 8), 3) == "plain"


def test_fast_forms_under_an_explicit_batch_sharded_mesh(forward_form, kernel_grad_form):
  from pix2pix_jax import parallel

  mesh = parallel.make_mesh()
  x, w = _normal(0, (8, 2, 3, 8)), _normal(1, (4, 4, 8, 8))  # 2 images per device
  xs = jax.device_put(x, parallel.batch_sharding(mesh))
  ws = jax.device_put(w, parallel.replicated(mesh))

  def loss(x, w):
    up = models.conv_transpose_fast(x, w)
    return jnp.sum(models.conv_down_fast(up, w) ** 2), up

  (_, up), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(xs, ws)
  assert up.sharding.spec[0] == "data"
  (_, up_plain), grads_plain = jax.value_and_grad(
    lambda x, w: (
      jnp.sum(models.conv_down(models.conv_transpose(x, w), w) ** 2),
      models.conv_transpose(x, w),
    ),
    (0, 1),
    has_aux=True,
  )(x, w)
  np.testing.assert_allclose(up, up_plain, atol=1e-5)
  for got, want in zip(grads, grads_plain, strict=True):
    # Gradients reach 1e4 here; float32 cancellation leaves about 1e-7 of that on small entries.
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(jnp.abs(want).max()))


def test_conv_down_fast_equals_plain_with_gradients(forward_form, kernel_grad_form):
  x, w = _normal(0, (2, 8, 6, 5)), _normal(1, (4, 4, 5, 7))
  g = _normal(2, (2, 4, 3, 7))
  y_plain, vjp_plain = jax.vjp(models.conv_down, x, w)
  y_fast, vjp_fast = jax.vjp(models.conv_down_fast, x, w)
  np.testing.assert_allclose(y_fast, y_plain, rtol=1e-5, atol=1e-5)
  for plain, fast in zip(vjp_plain(g), jax.jit(vjp_fast)(g), strict=True):
    assert fast.shape == plain.shape and fast.dtype == plain.dtype
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-4)


def test_conv_transpose_fast_gradients_equal_plain(forward_form, kernel_grad_form):
  x, w = _normal(0, (2, 6, 5, 7)), _normal(1, (4, 4, 7, 3))
  g = _normal(2, (2, 12, 10, 3))
  _, vjp_plain = jax.vjp(models.conv_transpose, x, w)
  _, vjp_fast = jax.vjp(models.conv_transpose_fast, x, w)
  for plain, fast in zip(vjp_plain(g), vjp_fast(g), strict=True):
    assert fast.shape == plain.shape and fast.dtype == plain.dtype
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-4)
  # And against finite differences of the scatter-add reference, along one random direction.
  dw = np.random.default_rng(3).normal(size=w.shape)
  eps = 1e-3
  num = (
    _np_conv_transpose(np.asarray(x, np.float64), np.asarray(w, np.float64) + eps * dw)
    - _np_conv_transpose(np.asarray(x, np.float64), np.asarray(w, np.float64) - eps * dw)
  ) / (2 * eps)
  np.testing.assert_allclose(
    np.sum(np.asarray(vjp_fast(g)[1]) * dw), np.sum(num * np.asarray(g)), rtol=1e-4
  )


def test_conv_transpose_fast_second_use_under_jit_and_bf16():
  x, w = _normal(0, (1, 4, 4, 8)), _normal(1, (4, 4, 8, 8))

  def loss(fn, w):
    return jnp.sum(fn(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)).astype(jnp.float32) ** 2)

  plain = jax.jit(jax.grad(lambda w: loss(models.conv_transpose, w)))(w)
  fast = jax.jit(jax.grad(lambda w: loss(models.conv_transpose_fast, w)))(w)
  assert fast.dtype == jnp.float32
  np.testing.assert_allclose(fast, plain, rtol=0.05, atol=0.05 * float(jnp.abs(plain).max()))


def _init(model, x: jax.Array) -> dict:
  return model.init(jax.random.key(0), x, train=False)


# --- The generator -------------------------------------------------------------------------


def _small_generator(**kw) -> models.UNetGenerator:
  return models.UNetGenerator(output_channels=3, **{"num_downs": 5, "ngf": 8, **kw})


def test_generator_matches_numpy_reference():
  gen = _small_generator(use_dropout=False, ngf=4)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  variables = _init(gen, x)
  got, _ = jax.jit(lambda v, x: gen.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  want = _np_unet(variables["params"], np.asarray(x), 5)
  assert got.shape == (2, 32, 32, 3) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, atol=1e-4)


def test_generator_fast_equals_transpose_outputs_and_gradients(forward_form):
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  target = _normal(1, (2, 32, 32, 3))
  fast, plain = _small_generator(upsample="fast"), _small_generator(upsample="transpose")
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
      "model.upsample": "transpose",
      "color_space": "lab",
    }
  )
  gen = models.make_generator(config)
  assert gen.output_channels == 2 and gen.ngf == 8 and gen.upsample == "transpose"
  assert jnp.dtype(gen.dtype) == jnp.bfloat16
  config.color_space = "rgb"
  assert models.make_generator(config).output_channels == 3
  disc = models.make_discriminator(config)
  assert isinstance(disc, models.PatchDiscriminator) and disc.n_layers == 2 and disc.ndf == 8
  config.model.discriminator = "pixel"
  assert isinstance(models.make_discriminator(config), models.PixelDiscriminator)
  config.model.discriminator = "nope"
  with pytest.raises(ValueError):
    models.make_discriminator(config)
