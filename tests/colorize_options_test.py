"""pix2pix-colorize's colour and output options on real files: --saturation, --reference,
--compare, and the progress bars of colourising and evaluating (--quiet)."""

import os
import pty
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import decode, exit_status, make_clip, subprocess_env, tiny_config, write_images
from PIL import Image
from skimage import color as skcolor

from pix2pix_jax import checkpoint, color, images, models, progress
from pix2pix_jax.colorize.video import probe
from pix2pix_jax.evaluate import main as evaluate

LOSSLESS = (".png", ".bmp", ".tiff")
# A real photo with colours far from what the test generator paints (see `workdir`).
REFERENCE = os.path.join(images.SAMPLES_DIR, "eval", "jxl_coast_keong_macan.jpg")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A tiny generator that paints clearly visible colour: its output layer is scaled and biased
  (an untrained one predicts almost gray, where a chroma gain is lost in 8-bit rounding)."""
  config = tiny_config()
  variables = models.make_generator(config).init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
  )
  variables["params"]["up0"]["kernel"] = variables["params"]["up0"]["kernel"] * 20
  variables["params"]["up0"]["bias"] = jnp.array([0.06, 0.1])  # ab near (7, 11)
  path = str(tmp_path_factory.mktemp("colourful"))
  checkpoint.save_generator(path, config, variables, step=1)
  return path


def run(workdir, *args):
  from pix2pix_jax.colorize import main as colorize

  return colorize.main(["--workdir", str(workdir), *[str(a) for a in args]])


def lab(rgb):
  """Independent reference: scikit-image's sRGB -> Lab of uint8 pixels."""
  return skcolor.rgb2lab(np.asarray(rgb)[..., :3] / 255.0)


def mean_chroma(rgb):
  ab = lab(rgb)[..., 1:]
  return float(np.hypot(ab[..., 0], ab[..., 1]).mean())


def read(path):
  with Image.open(path) as image:
    return np.asarray(image)


def test_saturation_zero_is_the_inputs_lightness_in_gray(workdir, tmp_path, capsys):
  write_images(tmp_path / "in")  # gray, RGB, RGBA, palette, 16-bit, EXIF-rotated; 45x31
  assert run(workdir, tmp_path / "in", "-o", tmp_path / "out", "--saturation", "0", "-q") == 0
  assert "9 of 9 inputs" in capsys.readouterr().out
  checked = 0
  for name in sorted(os.listdir(tmp_path / "in")):
    out = read(tmp_path / "out" / name)
    source = images.load_image(str(tmp_path / "in" / name)).rgb
    assert out.shape[:2] == source.shape[:2], name
    if os.path.splitext(name)[1] not in LOSSLESS:
      continue
    lightness = lab(source)[..., :1]
    gray = skcolor.lab2rgb(np.concatenate([lightness, 0 * lightness, 0 * lightness], -1))
    expected = np.round(gray * 255)
    assert np.abs(out[..., :3].astype(float) - expected).max() <= 1, name
    checked += 1
  assert checked == 6


def test_saturation_two_doubles_the_mean_chroma(workdir, tmp_path):
  write_images(tmp_path / "in")
  src = tmp_path / "in" / "rgb.bmp"
  for s in ("1", "2"):
    assert run(workdir, src, "-o", tmp_path / f"s{s}.png", "--saturation", s) == 0
  one, two = read(tmp_path / "s1.png"), read(tmp_path / "s2.png")
  assert mean_chroma(one) > 5  # the test generator does paint colour
  assert mean_chroma(two) / mean_chroma(one) == pytest.approx(2.0, rel=0.03)
  # Only the chroma changes: the lightness stays the source's (away from black and white, where
  # doubled chroma leaves the sRGB gamut and clipping moves L too).
  lightness = lab(images.load_image(str(src)).rgb)[..., 0]
  mid = (lightness > 15) & (lightness < 85)
  assert mid.mean() > 0.5
  for out in (one, two):
    np.testing.assert_allclose(lab(out)[..., 0][mid], lightness[mid], atol=1.0)


def test_compare_puts_source_left_and_result_right(workdir, tmp_path):
  write_images(tmp_path / "in")
  shutil.copy(os.path.join(images.SAMPLES_DIR, "eval", "skimage_chelsea.jpg"), tmp_path / "in")
  assert run(workdir, tmp_path / "in", "-o", tmp_path / "plain", "-q") == 0
  assert run(workdir, tmp_path / "in", "-o", tmp_path / "both", "--compare", "-q") == 0
  for name in sorted(os.listdir(tmp_path / "in")):
    plain, both = read(tmp_path / "plain" / name), read(tmp_path / "both" / name)
    h, w = plain.shape[:2]
    assert both.shape[:2] == (h, 2 * w), name  # 45 wide -> 90; rotated 31 -> 62
    assert both.shape[2:] == plain.shape[2:], name  # RGBA stays RGBA
    if os.path.splitext(name)[1] in LOSSLESS:
      loaded = images.load_image(str(tmp_path / "in" / name))
      np.testing.assert_array_equal(both[:, :w, :3], loaded.rgb, err_msg=name)
      np.testing.assert_array_equal(both[:, w:], plain, err_msg=name)
      if loaded.alpha is not None:
        np.testing.assert_array_equal(both[:, :w, 3], loaded.alpha)


@pytest.mark.parametrize(
  "name, size, vcodec, audio",
  [("clip.mp4", "64x48", "libx264", "aac"), ("clip.mkv", "33x25", "libvpx-vp9", "libopus")],
)
def test_compare_video_keeps_frames_rate_and_audio(
  workdir, tmp_path, capsys, name, size, vcodec, audio
):
  src = make_clip(str(tmp_path / name), size=size, vcodec=vcodec, audio=audio, seconds=0.4)
  plain, both = tmp_path / f"plain_{name}", tmp_path / f"both_{name}"
  assert run(workdir, src, "-o", plain, "--crf", "4", "--smoothing", "0", "-q") == 0
  assert run(workdir, src, "-o", both, "--crf", "4", "--smoothing", "0", "--compare") == 0
  w, h = (int(v) for v in size.split("x"))
  info = probe.probe(str(both))
  # H.264 output; an odd height (25) is coded 4:4:4, the width 2W is always even.
  assert (info.codec, info.width, info.height) == ("h264", 2 * w, h)
  assert info.audio_codec == probe.probe(src).audio_codec
  assert probe.count_frames(str(both)) == probe.count_frames(src) == 10
  assert info.fps == pytest.approx(probe.probe(src).fps)
  frames = decode(str(both))
  left = lab(frames[:, :, :w])[..., 0]
  assert np.abs(left - lab(decode(src))[..., 0]).mean() < 1.0
  right = lab(frames[:, :, w:])
  assert np.abs(right - lab(decode(str(plain)))).mean() < 1.0
  # Where stderr is not a terminal, the clip's progress is one summary line.
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 1 and re.fullmatch(
    rf"{re.escape(name)}: 10/10 frames in [\d.]+ s, [\d.]+ frames/s", err[0]
  )


def mean_ab(rgb):
  return lab(rgb)[..., 1:].reshape(-1, 2).mean(axis=0)


def test_reference_moves_the_colours_toward_the_photo(workdir, tmp_path):
  write_images(tmp_path / "in")
  src = tmp_path / "in" / "rgb.bmp"
  assert run(workdir, src, "-o", tmp_path / "plain.png") == 0
  assert run(workdir, src, "-o", tmp_path / "ref.png", "--reference", REFERENCE) == 0
  target = mean_ab(images.load_image(REFERENCE).rgb)
  before = np.linalg.norm(mean_ab(read(tmp_path / "plain.png")) - target)
  after = np.linalg.norm(mean_ab(read(tmp_path / "ref.png")) - target)
  assert before > 8.0 and after < 0.25 * before, (before, after)


def test_reference_bands_follow_the_photos_lightness(workdir, tmp_path):
  """A reference with blue highlights and orange shadows gives a bluer bright end of a ramp."""
  reference = np.zeros((40, 40, 3), np.uint8)
  reference[:20] = (120, 170, 250)  # light blue
  reference[20:] = (110, 50, 10)  # dark orange-brown
  Image.fromarray(reference).save(tmp_path / "ref.png")
  ramp = np.repeat(np.linspace(10, 245, 64).astype(np.uint8)[None, :], 24, axis=0)
  Image.fromarray(ramp).save(tmp_path / "ramp.png")
  assert (
    run(
      workdir,
      tmp_path / "ramp.png",
      "-o",
      tmp_path / "out.png",
      "--reference",
      tmp_path / "ref.png",
    )
    == 0
  )
  out = lab(read(tmp_path / "out.png"))
  dark, bright = out[:, :12, 1:].mean(axis=(0, 1)), out[:, -12:, 1:].mean(axis=(0, 1))
  # b (yellow+ / blue-): toward orange in the shadows, blue in the highlights, as the reference.
  assert dark[1] > 5 and bright[1] < -10 and dark[1] - bright[1] > 25, (dark, bright)


def test_reference_and_saturation_for_a_video(workdir, tmp_path):
  src = make_clip(str(tmp_path / "clip.mkv"), audio="libopus", seconds=0.4)
  plain, ref, gray = tmp_path / "plain.mkv", tmp_path / "ref.mkv", tmp_path / "gray.mkv"
  assert run(workdir, src, "-o", plain, "-q", "--crf", "4") == 0
  assert run(workdir, src, "-o", gray, "-q", "--crf", "4", "--saturation", "0") == 0
  assert mean_chroma(decode(str(plain))) > 5 and mean_chroma(decode(str(gray))) < 1
  assert run(workdir, src, "-o", ref, "-q", "--crf", "4", "--reference", REFERENCE) == 0
  assert probe.count_frames(str(ref)) == 10 and probe.probe(str(ref)).audio_codec == "opus"
  target = mean_ab(images.load_image(REFERENCE).rgb)
  before = np.linalg.norm(mean_ab(decode(str(plain))) - target)
  after = np.linalg.norm(mean_ab(decode(str(ref))) - target)
  assert before > 8.0 and after < 0.25 * before, (before, after)


def test_chroma_transfer_matches_numpy_statistics():
  rng = np.random.default_rng(0)
  mid = np.full((16, 16, 1), 50.0, np.float32)  # every pixel in the midtone band alone
  ab = rng.normal([5, -3], [4, 6], (16, 16, 2)).astype(np.float32)
  source = color.chroma_stats(mid, ab)
  for band in range(3):  # the empty shadow and highlight bands take the whole image's
    np.testing.assert_allclose(source.mean[band], ab.mean((0, 1)), atol=1e-4)
    np.testing.assert_allclose(source.std[band], ab.std((0, 1)), rtol=1e-4)
  wanted = rng.normal([20, 30], [10, 3], (16, 16, 2)).astype(np.float32)
  out = np.asarray(
    color.match_chroma(mid, ab, source, color.chroma_stats(mid, wanted), max_gain=4.0)
  )
  np.testing.assert_allclose(out.mean((0, 1)), wanted.mean((0, 1)), atol=1e-3)
  np.testing.assert_allclose(out.std((0, 1)), wanted.std((0, 1)), rtol=1e-3)
  # A spread 100x the source's is reached only up to the gain limit.
  out = np.asarray(
    color.match_chroma(mid, ab, source, color.chroma_stats(mid, 100 * ab), max_gain=4.0)
  )
  np.testing.assert_allclose(out.std((0, 1)), 4 * ab.std((0, 1)), rtol=1e-3)
  # Matching an image to its own statistics changes nothing, at any lightness.
  lightness = rng.uniform(0, 100, (16, 16, 1)).astype(np.float32)
  own = color.chroma_stats(lightness, ab)
  np.testing.assert_allclose(
    color.match_chroma(lightness, ab, own, own, max_gain=4.0), ab, atol=1e-4
  )


def test_bad_reference_is_one_line_and_writes_nothing(workdir, tmp_path, capsys):
  from pix2pix_jax.colorize import main as colorize

  write_images(tmp_path / "in")
  text = tmp_path / "notes.png"
  text.write_text("not an image\n")
  gray = tmp_path / "gray.jpg"
  Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (32, 1))).convert("RGB").save(gray)
  for reference, cause in [
    (tmp_path / "missing.jpg", "no such file"),
    (text, "not a readable image"),
    (gray, "no colour"),
  ]:
    argv = ["--workdir", workdir, tmp_path / "in", "-o", tmp_path / "out", "--reference", reference]
    assert exit_status(colorize.main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(reference) in err[0] and cause in err[0], err
    assert not (tmp_path / "out").exists()


def test_negative_saturation_is_refused(workdir, tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    run(workdir, tmp_path, "-o", tmp_path / "o", "--saturation", "-1")
  assert exit_info.value.code == 2 and "--saturation must be >= 0" in capsys.readouterr().err


def test_folder_progress_without_a_terminal_and_quiet(workdir, tmp_path, capsys):
  write_images(tmp_path / "in")
  assert run(workdir, tmp_path / "in", "-o", tmp_path / "a") == 0
  captured = capsys.readouterr()
  assert re.fullmatch(r"colourising: 9/9 images in [\d.]+ s, [\d.]+ images/s\n", captured.err)
  assert captured.out.count(" image\n") == 9
  for flag in ("--quiet", "--no-progress"):
    assert run(workdir, tmp_path / "in", "-o", tmp_path / flag, flag) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.count(" image\n") == 9


def read_terminal(master):
  data = b""
  while True:
    try:
      chunk = os.read(master, 4096)
    except OSError:  # EIO: the other end closed
      return data.decode()
    if not chunk:
      return data.decode()
    data += chunk


@pytest.mark.integration
def test_folder_progress_bar_on_a_terminal(workdir, tmp_path):
  write_images(tmp_path / "in")
  master, slave = pty.openpty()
  proc = subprocess.Popen(
    [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", workdir, str(tmp_path / "in")]
    + ["-o", str(tmp_path / "out"), "--batch-size", "4"],
    env=subprocess_env(),
    stdout=subprocess.PIPE,
    stderr=slave,
    text=True,
  )
  os.close(slave)
  terminal = read_terminal(master)
  out, _ = proc.communicate()
  os.close(master)
  assert proc.returncode == 0, terminal
  # The bar is redrawn in place and ends at 9/9; result lines go to stdout, untorn.
  assert "\r" in terminal and re.search(
    r"colourising \[#{24}\] 9/9 images [\d.]+ images/s ETA 00:00:00", terminal
  )
  assert out.count(" image\n") == 9 and "9 of 9 inputs" in out


def test_progress_bar_counts_rate_and_eta():
  master, slave = pty.openpty()
  with os.fdopen(slave, "w") as stream:
    bar = progress.Progress("job", 40, unit="images", stream=stream)
    bar.start -= 2.0  # as if the first 10 images took 2 s
    bar.update(10)
    assert re.fullmatch(r"job \[#{6}-{18}\] 10/40 images 5\.0 images/s ETA 00:00:06", bar.bar())
    bar.close()
    bar.close()  # only the first close writes
  assert read_terminal(master).count("\n") == 1
  os.close(master)


def test_evaluate_progress(workdir, tmp_path, capsys):
  folder = tmp_path / "photos"
  write_images(folder)
  args = ["--workdir", workdir, "--data", str(folder), "--output", str(tmp_path / "e")]
  assert evaluate.main(args) == 0
  err = capsys.readouterr().err
  assert re.search(
    rf"^evaluate {re.escape(str(folder))}: 9/9 images in [\d.]+ s, [\d.]+ images/s$", err, re.M
  ), err
  assert evaluate.main(args + ["--quiet"]) == 0
  assert "images/s" not in capsys.readouterr().err
