"""What the tests share: the one tiny model (as a config, a sweep's overrides and pix2pix-train's
flags), sweep files, tiny workdirs, photo folders and images of every mode, random Colorizers,
video clips made by ffmpeg and checks of colourised ones, and running commands as their console
scripts or processes run them.

Test files (and the scripts beside them) `from helpers import ...`, never from one another;
conftest.py sets up the environment before jax initialises, and holds the shared fixtures.
"""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from pix2pix_jax import cli, config_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(REPO, "configs", "default.py")

# The one tiny test model: unet with 5 downs, widths 4, 32x32 crops of 36x36 images, batch 4.
_TINY_MODEL = {
  "model.num_downs": 5,
  "model.ngf": 4,
  "model.ndf": 4,
  "data.load_size": 36,
  "data.crop_size": 32,
  "batch_size": 4,
}

# How each kind of test runs the tiny model: the fields it sets on top of _TINY_MODEL.
_TINY_RUNS = {
  # tiny_config: training in the test process, one epoch, frequent logs.
  "config": {
    "data.shuffle_buffer": 16,
    "data.max_eval_examples": 8,
    "num_epochs": 1,
    "num_epochs_decay": 1,
    "log_every_steps": 2,
    "sample_every_steps": 4,
    "num_sample_images": 2,
    "eval_every_steps": 4,
    "checkpoint_every_steps": 2,
    "keep_checkpoint_every_steps": 100,
  },
  # tiny_overrides: a sweep's runs (sweep and SLURM tests), 2 steps on the embedded samples.
  "sweep": {
    "data.source": "samples",
    "data.max_eval_examples": 4,
    "num_train_steps": 2,
    "log_every_steps": 1,
    "eval_every_steps": 1,
    "checkpoint_every_steps": 2,
    "sample_every_steps": 2,
    "num_sample_images": 2,
  },
  # tiny_flags: pix2pix-train in a process, evaluating and sampling only when asked.
  "flags": {
    "data.max_eval_examples": 4,
    "num_sample_images": 2,
    "log_every_steps": 1,
    "eval_every_steps": 1000,
    "sample_every_steps": 1000,
    "num_epochs": 100,
  },
}


def _tiny(run: str, extra: dict) -> dict:
  return {**_TINY_MODEL, **_TINY_RUNS[run], **extra}


def tiny_config(**extra):
  """The default config shrunk to seconds: the tiny model, one epoch, frequent logs; `extra`
  (dotted field names: `tiny_config(**{"model.hints": True})`) on top."""
  return config_lib.apply_overrides(config_lib.load(DEFAULT_CONFIG), _tiny("config", extra))


def tiny_overrides(**extra) -> dict:
  """The tiny model as a sweep's overrides (2 steps on the embedded samples), `extra` on top."""
  return _tiny("sweep", extra)


def tiny_flags(**extra) -> tuple[str, ...]:
  """The tiny model as pix2pix-train's `--config.field=value` flags, evaluating and sampling only
  when asked, `extra` on top."""
  return tuple(f"--config.{field}={value}" for field, value in _tiny("flags", extra).items())


def write_sweep(path, grid, overrides=None, **extra) -> str:
  """A sweep file named "tiny" at `path` over configs/default.py, with `overrides` (by default
  tiny_overrides()); returns its path."""
  overrides = tiny_overrides() if overrides is None else overrides
  body = {"name": "tiny", "base_config": DEFAULT_CONFIG, "overrides": overrides, "grid": grid}
  body.update(extra)
  path.write_text(f"def get_sweep():\n  return {body!r}\n")
  return str(path)


def exit_status(main, argv) -> int:
  """`main(argv)` run as its console script runs it (`cli.run`: a UserError is one line on
  stderr, status 1); returns the exit status."""
  with pytest.raises(SystemExit) as exit_info:
    cli.run(main, [str(a) for a in argv])
  return exit_info.value.code


def main_command(workdir, folder, steps, *extra):
  """`python -m pix2pix_jax.train.main` on a tiny model and an image folder (subprocess tests)."""
  return [
    sys.executable,
    "-m",
    "pix2pix_jax.train.main",
    f"--config={DEFAULT_CONFIG}",
    f"--workdir={workdir}",
    "--config.data.source=folder",
    f"--config.data.folder={folder}",
    f"--config.num_train_steps={steps}",
    *tiny_flags(),
    *extra,
  ]


def subprocess_env(local_devices=1, **extra):
  """The tests' environment for a new process: `local_devices` CPU devices, the repository and
  tests/ importable, `extra` variables on top."""
  env = dict(os.environ)
  env.update(
    XLA_FLAGS=f"--xla_force_host_platform_device_count={local_devices}",
    JAX_PLATFORMS="cpu",
    PYTHONPATH=os.pathsep.join([REPO, os.path.join(REPO, "tests")]),
    **extra,
  )
  return env


def start_process(cmd, *, merge_stderr=False):
  """`cmd` started in the repository with the tests' environment, its output piped as text."""
  return subprocess.Popen(
    cmd,
    env=subprocess_env(),
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
    text=True,
  )


def free_port() -> int:
  """A TCP port on localhost that nothing listens on now."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start_app(workdir, tmp, *extra, timeout=180, **env):
  """pix2pix-app in a new process with its temporary files under `tmp` (`env`: more
  environment); returns (process, address) once it serves."""
  cmd = [sys.executable, "-m", "pix2pix_jax.app.main", "--workdir", str(workdir)]
  cmd += ["--port", str(free_port()), *map(str, extra)]
  env = subprocess_env(TMPDIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False", **env)
  proc = subprocess.Popen(
    cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
  )
  deadline, lines = time.monotonic() + timeout, []
  while time.monotonic() < deadline:
    line = proc.stdout.readline()
    if not line and proc.poll() is not None:
      break
    lines.append(line)
    if found := re.search(r"serving on (http://\S+)", line):
      return proc, found.group(1)
  proc.kill()
  pytest.fail("pix2pix-app did not start:\n" + "".join(lines))


def start_colorize(workdir, src, out, *extra):
  """pix2pix-colorize on `src` into `out` with a batch of 4, quiet, in a new process."""
  cmd = [sys.executable, "-m", "pix2pix_jax.colorize.main", "--workdir", str(workdir), str(src)]
  return start_process([*cmd, "-o", str(out), "--batch-size", "4", "--quiet", *extra])


def tiny_generator_workdir(path, step=1, config=None):
  """A workdir holding only a random tiny generator (as `pix2pix-import-torch` writes one)."""
  import jax
  import jax.numpy as jnp

  from pix2pix_jax import checkpoint, models

  config = config or tiny_config()
  variables = models.make_generator(config).init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
  )
  checkpoint.save_generator(str(path), config, variables, step=step)
  return str(path)


def hint_generator_workdir(path):
  """A workdir with a tiny hint generator whose colours clearly follow the hints: its output
  layer is scaled and its hint-channel input weights amplified (an untrained one predicts almost
  gray)."""
  import jax
  import jax.numpy as jnp

  from pix2pix_jax import checkpoint, models

  config = tiny_config(**{"model.hints": True})
  variables = models.make_generator(config).init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
  )
  params = variables["params"]
  params["up0"]["kernel"] = params["up0"]["kernel"] * 20
  kernel = params["down0"]["kernel"]
  params["down0"]["kernel"] = kernel.at[:, :, 1:].multiply(200.0)
  checkpoint.save_generator(str(path), config, variables, step=1)
  return str(path)


def fill_generator_workdir(path):
  """A workdir with a tiny hint generator without its correction (last layer zero): its colours
  are the luminance-aware fill of its hints, right where the hints are (tests/hints_test.py)."""
  import jax
  import jax.numpy as jnp

  from pix2pix_jax import checkpoint, models

  config = tiny_config(**{"model.hints": True})
  variables = models.make_generator(config).init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False
  )
  variables["params"]["up0"] = jax.tree.map(jnp.zeros_like, variables["params"]["up0"])
  checkpoint.save_generator(str(path), config, variables, step=1)
  return str(path)


def app_engine(workdir):
  """The page's Engine over a workdir's generator, one image a call as pix2pix-app runs it."""
  from pix2pix_jax.app import engine as engine_lib
  from pix2pix_jax.colorize import colorizer as colorizer_lib

  colorizer = colorizer_lib.Colorizer.from_workdir(workdir, batch_size=1)
  return engine_lib.Engine(colorizer, model_flags=("--workdir", workdir, "--batch-size", "1"))


def gradient_photo(folder, width, height):
  """A gray PNG of a smooth gradient at folder/photo.png; returns its path."""
  import numpy as np
  from PIL import Image

  yy, xx = np.mgrid[0:height, 0:width]
  gray = (70 + 0.6 * xx + 0.2 * yy).clip(0, 255).astype(np.uint8)
  path = os.path.join(folder, "photo.png")
  Image.fromarray(gray).save(path)
  return str(path)


def write_photo_folder(root, n=16, size=(40, 40)):
  """`n` random RGB PNGs in `root` (created)."""
  import numpy as np
  from PIL import Image

  rng = np.random.default_rng(0)
  root.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"{i}.png")
  return root


# --- Images ----------------------------------------------------------------------------------


def gradient(w, h):
  """A w x h RGB ramp (int): red across, green down, blue diagonal stripes."""
  import numpy as np

  y, x = np.mgrid[0:h, 0:w]
  return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1)


def write_images(folder):
  """One file per mode and format; returns {name: (displayed width, height)}."""
  import numpy as np
  from PIL import Image

  os.makedirs(folder, exist_ok=True)
  rgb = Image.fromarray(gradient(45, 31).astype(np.uint8), "RGB")
  sizes = {}
  for name, image in {
    "gray.png": rgb.convert("L"),
    "rgb.jpg": rgb,
    "rgba.png": rgb.convert("RGBA"),
    "palette.png": rgb.convert("P"),
    "rgb.webp": rgb,
    "rgb.bmp": rgb,
    "gray16.tiff": Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257),
    "gray16.png": Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257),
  }.items():
    image.save(os.path.join(folder, name))
    sizes[name] = image.size
  exif = Image.Exif()
  exif[0x0112] = 6  # rotate 90 degrees on display
  rgb.save(os.path.join(folder, "rotated.jpg"), exif=exif)
  sizes["rotated.jpg"] = (31, 45)
  return sizes


def psnr(a, b, peak):
  """PSNR in dB of `b` against `a`, values up to `peak`."""
  import numpy as np

  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return 10 * np.log10(peak**2 / max(mse, 1e-12))


# --- Colorizers ------------------------------------------------------------------------------


def make_colorizer(config, **kwargs):
  """A Colorizer of a randomly initialised generator for `config`; `kwargs` to from_config."""
  import jax
  import jax.numpy as jnp

  from pix2pix_jax import models
  from pix2pix_jax.colorize import colorizer as colorizer_lib

  generator = models.make_generator(config)
  size = config.data.crop_size
  variables = generator.init(jax.random.key(0), jnp.zeros((1, size, size, 1)), train=False)
  return colorizer_lib.Colorizer.from_config(config, variables, **kwargs)


def frames(n, h=37, w=53, seed=0):
  """`n` h x w uint8 RGB frames of smooth colourful content, each with its own colour shift."""
  import numpy as np

  rng = np.random.default_rng(seed)
  # Smooth colourful content (random pixels would be mostly out of any model's domain).
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  base = np.stack([np.sin(6 * x + 1), np.cos(5 * y), np.sin(4 * (x + y))], -1) * 0.4 + 0.5
  shift = rng.uniform(0, 0.2, (n, 1, 1, 3))
  return np.clip((base[None] + shift) * 255, 0, 255).astype(np.uint8)


# --- Video clips made by ffmpeg (decord is imported only where used: some tests block it) ---


def ffmpeg(*args):
  """ffmpeg with `args`, quiet, overwriting; raises if it fails."""
  from pix2pix_jax.colorize.video import probe

  cmd = [probe.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
  subprocess.run(cmd, check=True)


def encode_ffv1(path, frames, *, rate=25, pix_fmt="gbrp") -> str:
  """uint8 RGB frames [T, H, W, 3] as a lossless FFV1 clip at `path`; returns `path` as a str."""
  from pix2pix_jax.colorize.video import probe

  height, width = frames.shape[1:3]
  cmd = [probe.ffmpeg_exe(), "-v", "error", "-f", "rawvideo", "-pix_fmt", "rgb24"]
  cmd += ["-s", f"{width}x{height}", "-r", str(rate), "-i", "-", "-c:v", "ffv1"]
  subprocess.run([*cmd, "-pix_fmt", pix_fmt, str(path)], input=frames.tobytes(), check=True)
  return str(path)


def make_clip(path, *, size="64x48", rate=25, seconds=1.0, vcodec="libx264", audio=None, extra=()):
  """A testsrc2 clip at `path` (a 440 Hz sine in `audio`'s codec if given); returns `path`."""
  width, height = size.split("x")
  args = ["-f", "lavfi", "-i", f"testsrc2=size=96x72:rate={rate}:duration={seconds}"]
  if audio:
    args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", audio]
  vf = f"scale={width}:{height},setsar=1"
  pix = "yuvj420p" if vcodec == "mjpeg" else "yuv420p"
  ffmpeg(*args, "-vf", vf, "-c:v", vcodec, "-pix_fmt", pix, *extra, path)
  return path


# make_clip's arguments for clips of each container and codec, by file name.
CLIP_CASES = {
  "h264_aac.mp4": dict(audio="aac"),
  "vp9_odd.mkv": dict(size="65x49", vcodec="libvpx-vp9", audio="libopus"),
  "vp8_vorbis.webm": dict(size="48x36", vcodec="libvpx", audio="libvorbis"),
  "mjpeg_pcm_odd.avi": dict(size="33x25", vcodec="mjpeg", audio="pcm_s16le"),
  "mpeg4_silent.avi": dict(vcodec="mpeg4", rate=30),
  "h264_pcm.mov": dict(audio="pcm_s16le", rate=24),
  "ntsc.mp4": dict(rate="30000/1001", seconds=0.5),
}


def make_vfr_clip(path):
  """64x48 H.264, frames 0-10 at 25 fps, then at 12.5 fps."""
  ffmpeg(
    "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25:duration=1",
    "-vf", "setpts='(N+gt(N,10)*(N-10))/25/TB'", "-fps_mode", "vfr", "-c:v", "libx264", path,
  )  # fmt: skip
  return path


def make_testsrc_clip(path, frames=6, size="32x24"):
  """`frames` frames of ffmpeg's testsrc at 10 fps in `path`'s format; returns `path`."""
  from pix2pix_jax.colorize.video import probe

  cmd = [probe.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi"]
  cmd += ["-i", f"testsrc=size={size}:rate=10", "-frames:v", str(frames), "-pix_fmt", "yuv420p"]
  subprocess.run([*cmd, str(path)], check=True)
  return path


def mp4_declaring_frames(path, count):
  """A 6-frame H.264 MP4 whose sample table (stts) declares `count` frames."""
  import struct

  data = bytearray(make_testsrc_clip(path).read_bytes())
  stts = data.find(b"stts")
  data[stts + 12 : stts + 16] = struct.pack(">I", count)  # the first entry's sample count
  path.write_bytes(bytes(data))
  return path


def decode(path):
  """All frames as uint8 RGB, decoded by ffmpeg (independently of decord)."""
  import numpy as np

  from pix2pix_jax.colorize.video import probe

  info = probe.probe(path)
  cmd = [probe.ffmpeg_exe(), "-v", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24"]
  cmd += ["-fps_mode", "passthrough", "-"]
  data = subprocess.run(cmd, check=True, capture_output=True).stdout
  return np.frombuffer(data, np.uint8).reshape(-1, info.height, info.width, 3)


def has_audio(path):
  """Whether `path` has an audio stream."""
  from pix2pix_jax.colorize.video import probe

  return probe.probe(path).audio_codec is not None


def check_output(src, dst, result):
  """A colourised clip `dst` of `src` (`result`: colorize_video's): the same frames, size, rate and
  audio, the luminance kept (> 40 dB), no temporary files left beside it."""
  import decord
  import numpy as np

  from pix2pix_jax import color
  from pix2pix_jax.colorize.video import probe

  info_in, info_out = probe.probe(src), probe.probe(dst)
  frames_in = probe.count_frames(src)
  assert probe.count_frames(dst) == frames_in == result.frames
  assert (info_out.width, info_out.height) == (info_in.width, info_in.height)
  assert has_audio(dst) == has_audio(src)
  reader_in = decord.VideoReader(src, ctx=decord.cpu(0), num_threads=1)
  reader_out = decord.VideoReader(dst, ctx=decord.cpu(0), num_threads=1)
  assert reader_out.get_avg_fps() == pytest.approx(reader_in.get_avg_fps(), rel=1e-3)
  a, b = decode(src), decode(dst)
  assert a.shape == b.shape
  lum_a = np.asarray(color.luminance(a / 255.0))
  lum_b = np.asarray(color.luminance(b / 255.0))
  assert psnr(lum_a, lum_b, 100.0) > 40.0
  assert not [f for f in os.listdir(os.path.dirname(dst)) if ".partial" in f or ".video" in f]
