"""Colourising with colour hints: the Colorizer API, pix2pix-colorize --hints (PNG and JSON) on
images, clips and exported .p2p models, and the bad-input cases."""

import json
import os
import zipfile

import numpy as np
import pytest
from helpers import decode, hint_generator_workdir, make_clip, tiny_generator_workdir
from PIL import Image

from pix2pix_jax import cli, hints
from pix2pix_jax.colorize import colorizer as colorizer_lib
from pix2pix_jax.colorize import main as colorize
from pix2pix_jax.colorize.video import colourise
from pix2pix_jax.export import main as export
from pix2pix_jax.export import p2p_file

W, H = 45, 31  # the photo's size (not the render size, 32)


def exit_status(main, argv) -> int:
  """`main(argv)` run as its console script runs it (a UserError: one line, status 1)."""
  with pytest.raises(SystemExit) as exit_info:
    cli.run(main, [str(a) for a in argv])
  return exit_info.value.code


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return hint_generator_workdir(tmp_path_factory.mktemp("hinted"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
  folder = tmp_path_factory.mktemp("photo")
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:H, 0:W]
  gray = (60 + 2 * xx + yy + rng.integers(0, 20, (H, W))).clip(0, 255).astype(np.uint8)
  path = folder / "photo.png"
  Image.fromarray(np.repeat(gray[..., None], 3, -1)).save(path)
  scribble = np.zeros((H, W, 4), np.uint8)
  scribble[5:12, 4:20] = (230, 20, 20, 255)  # red
  scribble[20:27, 25:40] = (20, 40, 230, 255)  # blue
  Image.fromarray(scribble, "RGBA").save(folder / "scribbles.png")
  points = [{"x": 10, "y": 8, "rgb": [230, 20, 20]}, {"x": 30.5, "y": 22, "rgb": [20, 40, 230]}]
  (folder / "points.json").write_text(json.dumps(points))
  return folder


def _read(path):
  return np.asarray(Image.open(path).convert("RGB")).astype(np.int32)


def test_the_api_takes_hints_per_image_and_per_clip(workdir, photo):
  colorizer = colorizer_lib.Colorizer.from_workdir(workdir, batch_size=4)
  assert colorizer.takes_hints
  image = _read(photo / "photo.png").astype(np.uint8)
  scribble = np.asarray(Image.open(photo / "scribbles.png"))
  plain, none, hinted, from_file = colorizer.colorize_images(
    [image] * 4, hints=[None, [], scribble, str(photo / "scribbles.png")]
  )
  np.testing.assert_array_equal(plain, none)  # an empty point list is no hints
  np.testing.assert_array_equal(plain, colorizer.colorize_images([image])[0])
  np.testing.assert_array_equal(hinted, from_file)
  assert np.abs(hinted.astype(int) - plain).mean() > 2
  # A clip's frames given the hints get the same colours as the image; hints are no state.
  np.testing.assert_array_equal(colorizer(np.stack([image, image]), hints=scribble)[1], hinted)
  np.testing.assert_array_equal(colorizer(image[None])[0], plain)
  # Resumable chunks are fingerprinted with the clip's hints.
  digest = colourise.ClipHints.fixed(colorizer, scribble, H, W).digest
  assert colourise.ClipHints.fixed(colorizer, scribble.copy(), H, W).digest == digest
  assert colourise.ClipHints.fixed(colorizer, scribble[::-1].copy(), H, W).digest != digest
  with pytest.raises(hints.HintsError, match="hint image is 45x31, the photo is 44x31"):
    colorizer.colorize_images([image[:, :-1]], hints=[scribble])


def test_a_model_without_hint_inputs_refuses_hints(tmp_path, photo):
  colorizer = colorizer_lib.Colorizer.from_workdir(tiny_generator_workdir(tmp_path), batch_size=4)
  assert not colorizer.takes_hints
  image = _read(photo / "photo.png").astype(np.uint8)
  with pytest.raises(hints.HintsError, match="trained without colour hints"):
    colorizer.colorize_images([image], hints=[str(photo / "points.json")])
  with pytest.raises(hints.HintsError, match="trained without colour hints"):
    colorizer(image[None], hints=[])


def test_cli_hints_from_png_and_json(workdir, photo, tmp_path, capsys):
  src = str(photo / "photo.png")
  run = ["--workdir", workdir, src, "--quiet"]
  assert colorize.main(run + ["-o", str(tmp_path / "plain.png")]) == 0
  png = tmp_path / "png.png"
  assert colorize.main(run + ["-o", str(png), "--hints", str(photo / "scribbles.png")]) == 0
  js = tmp_path / "json.png"
  assert colorize.main(run + ["-o", str(js), "--hints", str(photo / "points.json")]) == 0
  plain, with_png, with_json = _read(tmp_path / "plain.png"), _read(png), _read(js)
  assert with_png.shape == with_json.shape == (H, W, 3)
  assert np.abs(with_png - plain).mean() > 2 and np.abs(with_json - plain).mean() > 0.5
  # The red scribble's region is redder than the blue one's, and than without hints.
  red, blue = (slice(5, 12), slice(4, 20)), (slice(20, 27), slice(25, 40))

  def redness(image, region):
    return float((image[region][..., 0] - image[region][..., 2]).mean())

  assert redness(with_png, red) > redness(with_png, blue)
  # --compare: source left, result right; --saturation 0: gray whatever the hints.
  cmp = tmp_path / "cmp.png"
  assert (
    colorize.main(run + ["-o", str(cmp), "--hints", str(photo / "scribbles.png"), "--compare"]) == 0
  )
  both = _read(cmp)
  np.testing.assert_array_equal(both[:, W:], with_png)
  np.testing.assert_array_equal(both[:, :W], _read(src))
  gray = tmp_path / "gray.png"
  args = ["-o", str(gray), "--hints", str(photo / "scribbles.png"), "--saturation", "0"]
  assert colorize.main(run + args) == 0
  g = _read(gray)
  assert np.abs(g[..., 0] - g[..., 2]).max() <= 1


def test_cli_bad_hints_are_one_line_and_write_nothing(workdir, photo, tmp_path, capsys):
  src = str(photo / "photo.png")
  small = tmp_path / "small.png"
  Image.fromarray(np.zeros((10, 10, 4), np.uint8)).save(small)
  junk = tmp_path / "junk.json"
  junk.write_text("{oops")
  plain_workdir = tiny_generator_workdir(tmp_path / "plain")
  for wd, hint_file, cause in [
    (workdir, small, "hint image is 10x10"),
    (workdir, junk, "not a readable JSON"),
    (workdir, tmp_path / "missing.png", "no such hint file"),
    (plain_workdir, photo / "points.json", "trained without colour hints"),
  ]:
    out = tmp_path / "out.png"
    argv = ["--workdir", wd, src, "-o", out, "--hints", hint_file, "--quiet"]
    assert exit_status(colorize.main, argv) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    # The wrong size fails the input (its line, then the summary of failed inputs).
    assert (
      cause in err[0]
      and str(hint_file if cause != "trained without colour hints" else wd) in err[0]
    ), err
    if "10x10" in cause:
      assert src in err[0]
    else:
      assert len(err) == 1, err
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith("out")]


def test_cli_hints_on_a_clip_apply_to_every_frame(workdir, tmp_path):
  clip = make_clip(str(tmp_path / "clip.mp4"), size="64x48", seconds=0.2)
  scribble = np.zeros((48, 64, 4), np.uint8)
  scribble[:, :32] = (230, 20, 20, 255)
  Image.fromarray(scribble, "RGBA").save(tmp_path / "s.png")
  run = ["--workdir", workdir, clip, "--quiet", "--smoothing", "0", "--hint-motion", "fixed"]
  assert colorize.main(run + ["-o", str(tmp_path / "a.mp4")]) == 0
  assert (
    colorize.main(run + ["-o", str(tmp_path / "b.mp4"), "--hints", str(tmp_path / "s.png")]) == 0
  )
  a, b = decode(str(tmp_path / "a.mp4")).astype(int), decode(str(tmp_path / "b.mp4")).astype(int)
  assert a.shape == b.shape and len(a) == 5
  per_frame = np.abs(b - a).mean(axis=(1, 2, 3))
  assert (per_frame > 2).all(), per_frame
  # The wrong size for a clip: one line naming both, nothing written.
  out = tmp_path / "c.mp4"
  corner = tmp_path / "corner.json"
  corner.write_text(json.dumps([{"x": 63, "y": 47, "rgb": [1, 2, 3]}]))
  assert colorize.main(run + ["-o", str(out), "--hints", str(corner)]) == 0
  wrong = tmp_path / "wrong.png"
  Image.fromarray(np.zeros((10, 10, 4), np.uint8)).save(wrong)
  assert (
    exit_status(colorize.main, run + ["-o", str(tmp_path / "d.mp4"), "--hints", str(wrong)]) == 1
  )
  assert not (tmp_path / "d.mp4").exists()


def test_exported_hint_model_matches_the_workdir_and_lowers_for_cuda(workdir, photo, tmp_path):
  path = str(tmp_path / "m.p2p")
  assert export.main(["--workdir", workdir, "--output", path, "--batch-size", "1"]) == 0
  model = p2p_file.load(path)
  assert model.hints and model.metadata["input_channels"] == 4
  assert model.exported.in_avals[-1].shape == (1, 32, 32, 4)
  assert "cuda" in model.exported.platforms
  src = str(photo / "photo.png")
  for hint_file in ("scribbles.png", "points.json"):
    common = [src, "--quiet", "--hints", str(photo / hint_file)]
    a, b = tmp_path / f"a_{hint_file}.png", tmp_path / f"b_{hint_file}.png"
    assert colorize.main(["--workdir", workdir, "-o", str(a), "--batch-size", "4", *common]) == 0
    assert colorize.main(["--model", path, "-o", str(b), *common]) == 0
    assert np.abs(_read(a) - _read(b)).max() <= 1
  # A hint model exported with the first hint encoding (no hint_luminance_weight): refused.
  old = tmp_path / "old.p2p"
  with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
    for item in src.infolist():
      data = src.read(item)
      if item.filename == "metadata.json":
        metadata = json.loads(data)
        del metadata["hint_luminance_weight"]
        data = json.dumps(metadata).encode()
      dst.writestr(item, data)
  with pytest.raises(p2p_file.ModelFileError, match="old.p2p: a hint model of the first hint"):
    p2p_file.load(str(old))
