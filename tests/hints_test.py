"""Colour hints: the generator's hint inputs, simulated hints in training, rasterised hint files."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, tiny_config

from pix2pix_jax import color, config_lib, hints, models, parallel
from pix2pix_jax.train import step as train_step


def _without_hint_fields(config):
  """The config as it was before hints existed (no model.hints, no hint_sim)."""
  d = config.to_dict()
  del d["model"]["hints"]
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
    variables, jnp.concatenate([x, hints.no_hints(x.shape)], -1), train=False
  )
  np.testing.assert_array_equal(np.asarray(alone), np.asarray(explicit))
  # The same photo with one hint differs.
  ab = jnp.full((2, 32, 32, 2), 40.0)
  mask = jnp.zeros((2, 32, 32), bool).at[:, 10:13, 10:13].set(True)
  hinted = generator.apply(variables, jnp.concatenate([x, hints.encode(ab, mask)], -1), train=False)
  assert not np.allclose(np.asarray(hinted), np.asarray(alone))


# --- Simulated hints -----------------------------------------------------------------------------


def _sim(key, ab, **kw):
  settings = {"points_p": 0.125, "max_points": 128, "max_patch": 9}
  settings.update(kw)
  return jax.jit(lambda k, a: hints.simulate(k, a, **settings))(key, ab)


def test_simulated_hints_are_patches_of_the_true_mean_ab_with_allowed_sides_filled_out():
  rng = np.random.default_rng(1)
  ab = rng.uniform(-60, 60, (64, 24, 24, 2)).astype(np.float32)
  # One point per image (p tiny: n = min(geometric, 1) = 1 almost surely), sides 1, 3 or 5.
  fill, mask = jax.device_get(_sim(jax.random.key(3), ab, points_p=1e-9, max_points=1, max_patch=5))
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
    # One hint: its colour fills the whole image (the nearest-hint fill).
    np.testing.assert_allclose(fill[i], np.broadcast_to(expected, (24, 24, 2)), atol=1e-4)
  assert sides == {1, 3, 5}


def test_simulated_fill_takes_each_pixels_nearest_patch_and_is_zero_without_hints():
  rng = np.random.default_rng(4)
  ab = rng.uniform(-60, 60, (256, 16, 16, 2)).astype(np.float32)
  fill, mask = jax.device_get(_sim(jax.random.key(5), ab, points_p=0.3, max_points=4, max_patch=1))
  empty = ~mask.any(axis=(1, 2))
  assert empty.any() and (~empty).any()
  np.testing.assert_array_equal(fill[empty], 0.0)
  yy, xx = np.mgrid[0:16, 0:16]
  for i in np.flatnonzero(~empty)[:20]:
    ys, xs = np.nonzero(mask[i])  # 1x1 patches: the hints are the true pixels
    np.testing.assert_allclose(fill[i][mask[i]], ab[i][mask[i]], atol=1e-5)
    d2 = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2  # [16, 16, points]
    chosen = np.argmin(np.abs(fill[i][..., None, :] - ab[i][ys, xs]).sum(-1), axis=-1)
    np.testing.assert_array_equal(np.take_along_axis(d2, chosen[..., None], -1)[..., 0], d2.min(-1))


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
  a = np.asarray(fn(images, key, 5))
  np.testing.assert_array_equal(a, np.asarray(fn(images, key, 5)))
  assert not np.array_equal(a, np.asarray(fn(images, key, 6)))
  assert not np.array_equal(a, np.asarray(fn(images, jax.random.key(8), 5)))
  mesh = parallel.make_mesh()
  sharded = parallel.to_global({"image": _random_images(4)}, mesh)["image"]
  b = jax.jit(lambda im, k, s: train_step.simulated_hints(nets, color.uint8_to_float(im), k, s))(
    sharded, key, 5
  )
  assert len(jax.devices()) == 4 and len(b.sharding.device_set) == 4
  np.testing.assert_array_equal(a, np.asarray(b))


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
  assert config.hint_sim.points_p == 0.02 and config.loss.l1_weight == 1000


# --- Hint files and their rasterisation ----------------------------------------------------------


def _lab_ab(rgb):
  from skimage import color as skcolor

  return skcolor.rgb2lab(np.asarray(rgb, np.uint8).reshape(1, -1, 3))[0, :, 1:]


def test_a_one_pixel_dot_survives_the_resize_with_its_colour():
  rgba = np.zeros((100, 80, 4), np.uint8)
  rgba[37, 51] = (200, 30, 40, 255)
  raster = hints.rasterize(hints.from_rgba(rgba), 32)
  mask = raster[..., 2]
  assert mask.sum() == 1
  (y,), (x,) = np.nonzero(mask)
  assert abs(y - 37 * 32 / 100) <= 1 and abs(x - 51 * 32 / 80) <= 1
  np.testing.assert_allclose(raster[mask > 0][0, :2] * 110, _lab_ab([200, 30, 40])[0], atol=0.05)


def test_rasterised_hints_are_the_mean_ab_of_each_render_pixels_hint_pixels():
  rng = np.random.default_rng(0)
  rgba = rng.integers(0, 256, (64, 96, 4), dtype=np.uint8)
  rgba[..., 3] = np.where(rng.uniform(size=(64, 96)) < 0.05, 255, 0)
  full = hints.from_rgba(rgba)
  np.testing.assert_allclose(full.ab[full.mask], _lab_ab(rgba[..., :3][full.mask]), atol=0.05)
  raster = hints.rasterize(full, 32)  # footprints of 2 x 3 source pixels
  ab = full.ab.reshape(32, 2, 32, 3, 2)
  m = full.mask.reshape(32, 2, 32, 3)
  count = m.sum(axis=(1, 3))
  mean = (ab * m[..., None]).sum(axis=(1, 3)) / np.maximum(count, 1)[..., None]
  hit = count > 0
  np.testing.assert_array_equal(raster[..., 2], hit.astype(np.float32))
  np.testing.assert_allclose(raster[..., :2][hit] * 110, mean[hit], atol=1e-3)
  # Elsewhere: the colour of a nearest hint pixel (ties: any of them).
  ys, xs = np.nonzero(hit)
  yy, xx = np.mgrid[0:32, 0:32]
  d2 = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2
  nearest = d2 == d2.min(-1, keepdims=True)  # [32, 32, hints]
  close = np.abs(raster[..., None, :2] * 110 - mean[ys, xs]).max(-1) < 1e-3
  assert (nearest & close).any(-1).all()


@pytest.mark.parametrize("shape", [(20, 13), (300, 257), (64, 64)])
def test_no_hint_pixel_is_lost_at_any_scale(shape):
  rng = np.random.default_rng(1)
  for _ in range(5):
    rgba = np.zeros(shape + (4,), np.uint8)
    y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
    rgba[y, x] = (10, 200, 30, 255)
    raster = hints.rasterize(hints.from_rgba(rgba), 32)
    assert raster[..., 2].sum() >= 1
    np.testing.assert_allclose(
      raster[raster[..., 2] > 0][:, :2] * 110,
      np.broadcast_to(_lab_ab([10, 200, 30])[0], (int(raster[..., 2].sum()), 2)),
      atol=0.05,
    )


def test_json_points_mark_their_pixels():
  points = [{"x": 3.7, "y": 1.2, "rgb": [255, 0, 0]}, {"x": 0, "y": 9, "rgb": [0, 0, 255]}]
  h = hints.from_points(points, 10, 5)
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
      hints.read(str(path))
    assert str(path) in str(e.value) and cause in str(e.value) and "\n" not in str(e.value)
  small = tmp_path / "small.png"
  Image.fromarray(np.zeros((8, 9, 4), np.uint8)).save(small)
  with pytest.raises(hints.HintsError, match="small.png: hint image is 9x8, p.jpg is 10x10"):
    hints.as_hints(str(small), 10, 10, photo="p.jpg")
  outside = tmp_path / "outside.json"
  outside.write_text(json.dumps([{"x": 10, "y": 2, "rgb": [1, 2, 3]}]))
  with pytest.raises(hints.HintsError, match="outside.json: point 0 at x=10, y=2 is outside"):
    hints.load(str(outside), 10, 10)


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
  from conftest import write_photo_folder

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
