"""Colour hints: the generator's hint inputs, simulated hints in training, rasterised hint files."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import REPO, tiny_config

from pix2pix_jax import color, config_lib, hints, models, parallel
from pix2pix_jax.hints import device as hint_ops
from pix2pix_jax.hints import files as hint_files
from pix2pix_jax.hints import raster as hint_raster
from pix2pix_jax.train import step as train_step


def _without_hint_fields(config):
  """The config as it was before hints existed (no model.hints, no hint_sim)."""
  d = config.to_dict()
  del d["model"]["hints"]
  del d["model"]["hint_luminance_weight"]
  del d["hint_sim"]
  import ml_collections

  return ml_collections.ConfigDict(d)


def _random_images(n, size=32, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


# --- Hints off: bitwise unchanged ----------------------------------------------------------------


def test_hints_off_keeps_the_parameters_and_the_train_step_of_a_config_without_the_field():
  config = tiny_config()
  assert config.model.hints is False
  old = _without_hint_fields(config)
  nets_new = train_step.make_networks(config, 4)
  nets_old = train_step.make_networks(old, 4)
  assert nets_new.hint_sim is None
  key = jax.random.key(0)
  init = jax.jit(lambda n, k: train_step.init_state(n, k, 32), static_argnums=0)
  new, ref = init(nets_new, key), init(nets_old, key)
  assert jax.tree.structure(new) == jax.tree.structure(ref)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(ref), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The same step program (hence the same outputs): identical jaxprs.
  batch = {"image": jnp.zeros((4, 32, 32, 3), jnp.uint8)}

  def jaxpr(nets):
    return str(
      jax.make_jaxpr(lambda s, b, k: train_step.train_step(s, b, k, nets=nets))(ref, batch, key)
    )

  assert jaxpr(nets_new) == jaxpr(nets_old)
  assert "concatenate" in jaxpr(nets_new)  # (the discriminator's pair) sanity of the check


def test_a_hint_generator_takes_four_channels_and_l_alone_means_no_hints():
  config = tiny_config(**{"model.hints": True})
  assert hints.input_channels(config) == 4 and hints.input_channels(tiny_config()) == 1
  generator = models.make_generator(config)
  variables = generator.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False)
  assert variables["params"]["down0"]["kernel"].shape[2] == 4
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 1)), jnp.float32)
  alone = generator.apply(variables, x, train=False)
  explicit = generator.apply(
    variables, jnp.concatenate([x, hint_ops.no_hints(x.shape)], -1), train=False
  )
  np.testing.assert_array_equal(np.asarray(alone), np.asarray(explicit))
  # The same photo with one hint differs.
  ab = jnp.full((2, 32, 32, 2), 40.0)
  mask = jnp.zeros((2, 32, 32), bool).at[:, 10:13, 10:13].set(True)
  hinted = generator.apply(
    variables, jnp.concatenate([x, hint_ops.encode(ab, mask)], -1), train=False
  )
  assert not np.allclose(np.asarray(hinted), np.asarray(alone))


def test_a_hint_model_of_the_first_encoding_is_refused_in_one_line():
  import ml_collections

  d = tiny_config(**{"model.hints": True}).to_dict()
  del d["model"]["hint_luminance_weight"]  # as configs of the first hint encoding were saved
  with pytest.raises(hints.HintsError, match="first hint encoding.*train it again"):
    models.make_generator(ml_collections.ConfigDict(d))


# --- Simulated hints -----------------------------------------------------------------------------


def _sim(key, ab, **kw):
  settings = {"points_p": 0.125, "max_points": 128, "max_patch": 9}
  settings.update(kw)
  return jax.jit(lambda k, a: hint_ops.simulate(k, a, **settings))(key, ab)


def test_simulated_hints_are_patches_of_the_true_mean_ab_with_allowed_sides():
  rng = np.random.default_rng(1)
  ab = rng.uniform(-60, 60, (64, 24, 24, 2)).astype(np.float32)
  # One point per image (p tiny: n = min(geometric, 1) = 1 almost surely), sides 1, 3 or 5.
  hint_ab, mask = jax.device_get(
    _sim(jax.random.key(3), ab, points_p=1e-9, max_points=1, max_patch=5)
  )
  sides = set()
  for i in range(len(ab)):
    ys, xs = np.nonzero(mask[i])
    assert len(ys), "every image has its point"
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    assert mask[i].sum() == (y1 - y0) * (x1 - x0), "a solid rectangle"
    inside = 0 < y0 and y1 < 24 and 0 < x0 and x1 < 24
    if inside:
      assert y1 - y0 == x1 - x0 and (y1 - y0) in (1, 3, 5)
      sides.add(int(y1 - y0))
    expected = ab[i, y0:y1, x0:x1].mean(axis=(0, 1))
    np.testing.assert_allclose(
      hint_ab[i][mask[i]], np.broadcast_to(expected, (len(ys), 2)), atol=1e-4
    )
  assert sides == {1, 3, 5}


def _brute_force_fill(ab, mask, lum, weight):
  """hint_ops.propagate's definition, pixel by pixel over every hint pixel (numpy)."""
  h, w = mask.shape
  ys, xs = np.nonzero(mask)
  yy, xx = np.mgrid[0:h, 0:w]
  d = ((yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2) / (h * w)
  d = d + weight * ((lum[..., None] - lum[ys, xs]) / 100.0) ** 2
  return ab[ys, xs][np.argmin(d, axis=-1)], d.min(-1)


@pytest.mark.parametrize("weight", [0.0, 2.5])
def test_propagate_gives_each_pixel_its_nearest_hint_by_position_and_luminance(weight):
  rng = np.random.default_rng(4)
  b, h, w = 6, 40, 56  # not powers of two
  ab = rng.uniform(-60, 60, (b, h, w, 2)).astype(np.float32)
  # Lightness in flat regions with edges, as photos have it, plus a little noise.
  lum = (rng.integers(0, 4, (b, 1, 1)) * 25 + 10 * (np.arange(w) > w // 2)).astype(np.float32)
  lum = np.broadcast_to(lum, (b, h, w)) + rng.uniform(0, 2, (b, h, w)).astype(np.float32)
  mask = rng.uniform(size=(b, h, w)) < np.array([0, 0.001, 0.005, 0.01, 0.02, 0.05])[:, None, None]
  mask[1, 5, 7] = True
  fill, distance = jax.device_get(
    jax.jit(hint_ops.propagate, static_argnums=3)(ab, mask, lum, weight)
  )
  np.testing.assert_array_equal(fill[0], 0.0)  # no hints: gray, as far as can be
  np.testing.assert_array_equal(distance[0], hint_ops.MAX_HINT_DISTANCE)
  for i in range(1, b):
    expected, best = _brute_force_fill(ab[i], mask[i], lum[i], weight)
    np.testing.assert_array_equal(fill[i][mask[i]], ab[i][mask[i]])  # hints keep their colour
    same = np.all(fill[i] == expected, axis=-1)
    # A jump flood may take a hint that is not the nearest for a few pixels, never a far one.
    assert same.mean() > 0.97, same.mean()
    ys, xs = np.nonzero(mask[i])
    chosen = np.argmin(np.abs(fill[i][..., None, :] - ab[i][ys, xs]).sum(-1), axis=-1)
    yy, xx = np.mgrid[0:h, 0:w]
    d = ((yy - ys[chosen]) ** 2 + (xx - xs[chosen]) ** 2) / (h * w)
    d = d + weight * ((lum[i] - lum[i][ys[chosen], xs[chosen]]) / 100.0) ** 2
    assert np.all(d <= best + 0.05)
    np.testing.assert_allclose(distance[i], np.sqrt(d), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(distance[i][mask[i]], 0.0)


def test_the_luminance_weight_keeps_a_hint_on_its_side_of_an_edge():
  # Left half dark, right half light; one red hint on each side near the edge, placed so that
  # by position alone the left hint is nearer to much of the right half.
  lum = np.where(np.arange(32) < 16, 20.0, 80.0)[None, None, :].repeat(32, 1).astype(np.float32)
  mask = np.zeros((1, 32, 32), bool)
  mask[0, 16, 14] = mask[0, 2, 31] = True
  ab = np.zeros((1, 32, 32, 2), np.float32)
  ab[0, 16, 14] = (50, 0)
  ab[0, 2, 31] = (-50, 0)
  plain = np.asarray(hint_ops.propagate(ab, mask, lum, 0.0)[0])[0, ..., 0]
  aware = np.asarray(hint_ops.propagate(ab, mask, lum, 2.5)[0])[0, ..., 0]
  assert (plain[:, 16:] == 50).mean() > 0.3  # crosses the edge by position alone
  assert np.all(aware[:, 16:] == -50) and np.all(aware[:, :16] == 50)


def test_simulated_hint_counts_follow_the_geometric_law_and_many_images_get_none():
  ab = np.random.default_rng(2).uniform(-60, 60, (2000, 16, 16, 2)).astype(np.float32)
  _, mask = jax.device_get(_sim(jax.random.key(0), ab, points_p=0.125, max_points=6, max_patch=1))
  pixels = mask.sum(axis=(1, 2))
  assert abs(np.mean(pixels == 0) - 0.125) < 0.03  # P(n = 0) = p
  assert pixels.max() <= 6  # at most max_points 1x1 patches
  assert np.mean(pixels >= 5) > 0.3  # the tail folded into max_points: P(n >= 5) = 0.875^5


def test_training_hints_are_a_pure_function_of_key_and_step_and_of_no_sharding():
  config = tiny_config(**{"model.hints": True})
  nets = train_step.make_networks(config, 4)
  images = color.uint8_to_float(_random_images(4))
  key = jax.random.key(7)
  fn = jax.jit(lambda im, k, s: train_step.simulated_hints(nets, im, k, s))
  a = jax.device_get(fn(images, key, 5))
  for x, y in zip(a, jax.device_get(fn(images, key, 5)), strict=True):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[1], np.asarray(fn(images, key, 6)[1]))
  assert not np.array_equal(a[1], np.asarray(fn(images, jax.random.key(8), 5)[1]))
  mesh = parallel.make_mesh()
  sharded = parallel.to_global({"image": _random_images(4)}, mesh)["image"]
  b = jax.jit(lambda im, k, s: train_step.simulated_hints(nets, color.uint8_to_float(im), k, s))(
    sharded, key, 5
  )
  assert len(jax.devices()) == 4 and len(b[1].sharding.device_set) == 4
  for x, y in zip(a, jax.device_get(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_hue_rotation_turns_the_colours_and_keeps_the_lightness():
  images = color.uint8_to_float(_random_images(64, size=8) // 4 + 96)  # turned, mostly in gamut
  lab = np.asarray(color.rgb_to_lab(images))
  turned = np.asarray(color.rgb_to_lab(hint_ops.rotate_hue(jax.random.key(0), images, 0.5)))
  same = np.all(np.abs(turned - lab) < 1e-3, axis=(1, 2, 3))
  assert 0.25 < same.mean() < 0.75  # about half the images
  lightness_change = np.abs(turned[..., 0] - lab[..., 0])  # L kept, but where the gamut clips
  assert np.median(lightness_change) < 0.01 and np.percentile(lightness_change, 99) < 2
  chroma = np.hypot(lab[..., 1], lab[..., 2])
  np.testing.assert_allclose(
    np.hypot(turned[..., 1], turned[..., 2])[same], chroma[same], atol=1e-3
  )
  # A turned image: one angle for all its pixels.
  i = int(np.flatnonzero(~same)[0])
  angle = np.angle(
    (turned[i, ..., 1] + 1j * turned[i, ..., 2]) / (lab[i, ..., 1] + 1j * lab[i, ..., 2])
  )
  strong = chroma[i] > 20
  assert np.ptp(np.unwrap(angle[strong].ravel())) < 0.2
  assert hint_ops.rotate_hue(jax.random.key(0), images, 0.0) is images


def test_chroma_scaling_dulls_some_images_by_one_factor_each_and_keeps_lightness_and_hue():
  images = color.uint8_to_float(_random_images(64, size=8) // 4 + 96)
  lab = np.asarray(color.rgb_to_lab(images))
  dull = np.asarray(color.rgb_to_lab(hint_ops.scale_chroma(jax.random.key(0), images, 0.5)))
  same = np.all(np.abs(dull - lab) < 1e-3, axis=(1, 2, 3))
  assert 0.25 < same.mean() < 0.75  # about half the images
  np.testing.assert_allclose(dull[..., 0], lab[..., 0], atol=1e-2)  # scaling stays in gamut
  strong = np.hypot(lab[..., 1], lab[..., 2]) > 10
  for i in np.flatnonzero(~same):
    ratio = (
      np.hypot(dull[i, ..., 1], dull[i, ..., 2])[strong[i]]
      / np.hypot(lab[i, ..., 1], lab[i, ..., 2])[strong[i]]
    )
    assert ratio.max() < 1 and np.ptp(ratio) < 0.02  # one factor below 1 for the image
    cross = lab[i, ..., 1] * dull[i, ..., 2] - lab[i, ..., 2] * dull[i, ..., 1]
    assert np.abs(cross[strong[i]]).max() < 0.05 * np.abs(lab[i, ..., 1:]).max() ** 2  # hue kept
  assert hint_ops.scale_chroma(jax.random.key(0), images, 0.0) is images


@pytest.mark.parametrize("color_space", ["lab", "rgb"])
def test_the_hint_generator_outputs_its_luminance_fill_plus_a_correction(color_space):
  config = tiny_config(**{"model.hints": True, "color_space": color_space})
  generator = models.make_generator(config)
  variables = generator.init(jax.random.key(0), jnp.zeros((1, 32, 32, 4)), train=False)
  # No correction: the last layer's weights at zero (tanh(0) = 0).
  params = jax.tree.map(lambda a: a, variables["params"])
  params["up0"] = jax.tree.map(jnp.zeros_like, params["up0"])
  still = {**variables, "params": params}
  rgb = color.uint8_to_float(_random_images(2))
  lab = color.rgb_to_lab(rgb)
  mask = jnp.zeros((2, 32, 32), bool).at[:, 4, 4].set(True).at[:, 20, 25].set(True)
  x = jnp.concatenate(
    [color.model_input(rgb, color_space), hint_ops.encode(lab[..., 1:], mask)], axis=-1
  )
  out = generator.apply(still, x, train=False)
  lightness = color.input_lightness(x[..., :1], color_space)
  fill, _ = hint_ops.propagate(lab[..., 1:], mask, lightness[..., 0], 2.5)
  if color_space == "lab":
    expected = np.clip(np.asarray(fill) / 110, -1, 1)
  else:  # the fill's colours at each pixel's own lightness
    expected = np.asarray(color.combine(lightness, fill)) * 2 - 1
  np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)
  # Without hints the fill is 0: a Lab generator's output is its correction alone.
  alone = generator.apply(still, x[..., :1], train=False)
  if color_space == "lab":
    np.testing.assert_array_equal(np.asarray(alone), 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("color_space,dtype", [("lab", "float32"), ("rgb", "bfloat16")])
def test_a_hint_model_trains_sharded(color_space, dtype):
  config = tiny_config(**{"model.hints": True, "color_space": color_space, "model.dtype": dtype})
  nets = train_step.make_networks(config, 4)
  mesh = parallel.make_mesh()
  init = jax.jit(
    lambda k: train_step.init_state(nets, k, 32), out_shardings=parallel.replicated(mesh)
  )
  state = init(jax.random.key(0))
  before = np.asarray(state.g_params["down0"]["kernel"])
  step = train_step.compile_step(nets, mesh)
  for i in range(2):
    batch = parallel.to_global({"image": _random_images(4, seed=i)}, mesh)
    state, metrics = step(state, batch, jax.random.key(1))
    assert all(np.isfinite(float(v)) for v in metrics.values())
  after = np.asarray(state.g_params["down0"]["kernel"])
  assert after.shape[2] == 4
  # The hint channels' weights learn (hints reach the generator in training).
  assert np.abs(after[:, :, 1:] - before[:, :, 1:]).max() > 0


def test_the_quickstart_hints_config_is_the_quickstart_with_hints():
  config = config_lib.load(f"{REPO}/configs/quickstart_hints.py")
  assert config.model.hints is True and config.data.source == "samples"
  assert config.model.num_downs == 7 and config.hint_sim.max_patch == 5
  assert config.hint_sim.points_p == 0.05 and config.loss.l1_weight == 1000
  assert config.hint_sim.hue_rotation_p == 0.5 and config.model.hint_luminance_weight == 2.5
  assert config.hint_sim.chroma_scale_p == 0.5


# --- Hint files and their rasterisation ----------------------------------------------------------


def _lab_ab(rgb):
  from skimage import color as skcolor

  return skcolor.rgb2lab(np.asarray(rgb, np.uint8).reshape(1, -1, 3))[0, :, 1:]


def test_a_one_pixel_dot_survives_the_resize_with_its_colour():
  rgba = np.zeros((100, 80, 4), np.uint8)
  rgba[37, 51] = (200, 30, 40, 255)
  raster = hint_raster.rasterize(hint_files.from_rgba(rgba), 32)
  mask = raster[..., 2]
  assert mask.sum() == 1
  (y,), (x,) = np.nonzero(mask)
  assert abs(y - 37 * 32 / 100) <= 1 and abs(x - 51 * 32 / 80) <= 1
  np.testing.assert_allclose(raster[mask > 0][0, :2] * 110, _lab_ab([200, 30, 40])[0], atol=0.05)


def test_rasterised_hints_are_the_mean_ab_of_each_render_pixels_hint_pixels():
  rng = np.random.default_rng(0)
  rgba = rng.integers(0, 256, (64, 96, 4), dtype=np.uint8)
  rgba[..., 3] = np.where(rng.uniform(size=(64, 96)) < 0.05, 255, 0)
  full = hint_files.from_rgba(rgba)
  np.testing.assert_allclose(full.ab[full.mask], _lab_ab(rgba[..., :3][full.mask]), atol=0.05)
  raster = hint_raster.rasterize(full, 32)  # footprints of 2 x 3 source pixels
  ab = full.ab.reshape(32, 2, 32, 3, 2)
  m = full.mask.reshape(32, 2, 32, 3)
  count = m.sum(axis=(1, 3))
  mean = (ab * m[..., None]).sum(axis=(1, 3)) / np.maximum(count, 1)[..., None]
  hit = count > 0
  np.testing.assert_array_equal(raster[..., 2], hit.astype(np.float32))
  np.testing.assert_allclose(raster[..., :2][hit] * 110, mean[hit], atol=1e-3)
  np.testing.assert_array_equal(raster[..., :2][~hit], 0.0)  # the generator spreads them


@pytest.mark.parametrize("shape", [(20, 13), (300, 257), (64, 64)])
def test_no_hint_pixel_is_lost_at_any_scale(shape):
  rng = np.random.default_rng(1)
  for _ in range(5):
    rgba = np.zeros(shape + (4,), np.uint8)
    y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
    rgba[y, x] = (10, 200, 30, 255)
    raster = hint_raster.rasterize(hint_files.from_rgba(rgba), 32)
    assert raster[..., 2].sum() >= 1
    np.testing.assert_allclose(
      raster[raster[..., 2] > 0][:, :2] * 110,
      np.broadcast_to(_lab_ab([10, 200, 30])[0], (int(raster[..., 2].sum()), 2)),
      atol=0.05,
    )


@pytest.mark.parametrize("shape", [(20, 13), (257, 300), (40, 96)])
def test_each_render_pixel_takes_the_mean_ab_of_the_hint_pixels_in_its_footprint(shape):
  """Up- and downsampling: render pixel i covers source rows floor(i H / r) up to (not
  including) max(that + 1, floor((i + 1) H / r)), likewise columns (a direct loop here)."""
  rng = np.random.default_rng(2)
  mask = rng.uniform(size=shape) < 0.05
  ab = (rng.normal(0, 30, shape + (2,)) * mask[..., None]).astype(np.float32)
  size = 32
  got = hint_raster.rasterize(hint_files.Hints(ab, mask), size)
  for i in range(size):
    y0 = i * shape[0] // size
    y1 = max(y0 + 1, (i + 1) * shape[0] // size)
    for j in range(size):
      x0 = j * shape[1] // size
      x1 = max(x0 + 1, (j + 1) * shape[1] // size)
      m = mask[y0:y1, x0:x1]
      assert got[i, j, 2] == float(m.any()), (i, j)
      want = ab[y0:y1, x0:x1][m].mean(axis=0) / 110 if m.any() else np.zeros(2)
      np.testing.assert_allclose(got[i, j, :2], want, atol=1e-6)


def test_json_points_mark_their_pixels():
  points = [{"x": 3.7, "y": 1.2, "rgb": [255, 0, 0]}, {"x": 0, "y": 9, "rgb": [0, 0, 255]}]
  h = hint_files.from_points(points, 10, 5)
  assert h.mask.sum() == 2 and h.mask[1, 3] and h.mask[9, 0]
  np.testing.assert_allclose(h.ab[1, 3], _lab_ab([255, 0, 0])[0], atol=0.05)


def test_bad_hint_files_are_one_line_naming_the_file(tmp_path):
  from PIL import Image

  cases = []
  rgb = tmp_path / "opaque.png"
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(rgb)
  cases.append((rgb, "no transparency"))
  junk = tmp_path / "junk.png"
  junk.write_text("no image")
  cases.append((junk, "not a readable hint image"))
  bad_json = tmp_path / "bad.json"
  bad_json.write_text("[{")
  cases.append((bad_json, "not a readable JSON"))
  wrong = tmp_path / "wrong.json"
  wrong.write_text(json.dumps([{"x": 1, "y": 2, "rgb": [1, 2]}]))
  cases.append((wrong, "rgb must be three values"))
  cases.append((tmp_path / "missing.png", "no such hint file"))
  for path, cause in cases:
    with pytest.raises(hints.HintsError) as e:
      hint_files.read(str(path))
    assert str(path) in str(e.value) and cause in str(e.value) and "\n" not in str(e.value)
  small = tmp_path / "small.png"
  Image.fromarray(np.zeros((8, 9, 4), np.uint8)).save(small)
  with pytest.raises(hints.HintsError, match="small.png: hint image is 9x8, p.jpg is 10x10"):
    hint_files.as_hints(str(small), 10, 10, photo="p.jpg")
  outside = tmp_path / "outside.json"
  outside.write_text(json.dumps([{"x": 10, "y": 2, "rgb": [1, 2, 3]}]))
  with pytest.raises(hints.HintsError, match="outside.json: point 0 at x=10, y=2 is outside"):
    hint_files.load(str(outside), 10, 10)


def test_bad_hint_simulation_settings_are_one_config_error():
  config = tiny_config(**{"model.hints": True, "hint_sim.max_patch": 4, "hint_sim.points_p": 0.0})
  with pytest.raises(config_lib.ConfigError) as e:
    train_step.make_networks(config, 4)
  assert "max_patch=4 must be an odd" in str(e.value) and "points_p=0.0" in str(e.value)
  # Off: the settings are not read.
  train_step.make_networks(tiny_config(**{"hint_sim.max_patch": 4}), 4)


@pytest.mark.slow
def test_a_hint_model_resumes_exactly(tmp_path):
  """2 steps, stop, 2 more == 4 straight, bitwise: the simulated hints are keyed by the step."""
  from helpers import write_photo_folder

  from pix2pix_jax.train import loop as train_loop

  folder = str(write_photo_folder(tmp_path / "photos", n=12))

  def run(steps, workdir):
    config = tiny_config(
      **{
        "model.hints": True,
        "data.source": "folder",
        "data.folder": folder,
        "num_train_steps": steps,
        "num_epochs": 2,
        "eval_every_steps": 100,
        "sample_every_steps": 100,
      }
    )
    return train_loop.train_and_evaluate(config, str(tmp_path / workdir))

  straight = run(4, "a")
  run(2, "b")
  resumed = run(4, "b")
  assert int(resumed.step) == 4
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(straight), jax.device_get(resumed))
