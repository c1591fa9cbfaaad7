"""Real photos and clips from Debian packages, for measurements the embedded samples cannot give.

Writes, under OUT:
  holdout/      26 real photos kept out of every training run (the hint model's unseen set)
  extra_train/  20 more training photos (OpenCV's sample data, scikit-image, matplotlib)
  wide/         train/ = the embedded training photos + extra_train, eval/ = the embedded eval
  clips/        5 real clips from OpenCV's samples, 6 s of each as lossless FFV1 (box, cup: a
                hand moves an object; tree, vtest: a still camera; Megamind: animation, 2 cuts)
  SOURCES.md    each file's package, path and licence (from the package's copyright file)

Photos are prepared as the embedded samples are (EXIF orientation, RGB, Lanczos to a short side
of 256, centre-cropped to a long side of at most 384, JPEG 90). Nothing here is in the repository.

  python experiments/package_data.py --out data/packages [--debs /tmp/debs]
"""

import argparse
import glob
import gzip
import os
import shutil
import subprocess

import matplotlib
import skimage
from PIL import Image, ImageOps

from pix2pix_jax import images
from pix2pix_jax.colorize.video import probe

PLASMA = "usr/share/wallpapers/{}/contents/images"
BACKGROUNDS = "usr/share/backgrounds"
OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"

# package -> (licence as the package's copyright file gives it, [paths of photos]).
HOLDOUT = {
  "plasma-workspace-wallpapers": (
    "GPL-2+ (debian/copyright)",
    [
      PLASMA.format(name)
      for name in (
        "BytheWater ColdRipple ColorfulCups DarkestHour EveningGlow FallenLeaf Kite "
        "OneStandsOut Path summer_1am"
      ).split()
    ],
  ),
  "lomiri-wallpapers-16.04": (
    "CC-BY-SA-4.0 (debian/copyright)",
    [
      f"{BACKGROUNDS}/{name}.jpg"
      for name in ("Bridge_by_Sander_Klootwijk Dragonfly_by_Bolly free_by_Peter_Nerlich".split())
    ],
  ),
  "lomiri-wallpapers-20.04": (
    "CC-BY-SA-3.0 (debian/copyright)",
    [f"{BACKGROUNDS}/Kleiber_by_Lukas_Baubkus.jpg"],
  ),
  "mate-backgrounds": (
    "GPL-2+ (debian/copyright)",
    [
      f"{BACKGROUNDS}/mate/nature/{name}.jpg"
      for name in (
        "Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops Storm TwoWings "
        "Wood YellowFlower"
      ).split()
    ],
  ),
}
EXTRA_TRAIN = {
  "opencv-doc": (
    "Apache-2.0 / BSD-3-Clause (debian/copyright)",
    [
      f"{OPENCV_DATA}/{name}"
      for name in (
        "aero1.jpg aero3.jpg aloeL.jpg apple.jpg baboon.jpg board.jpg building.jpg "
        "butterfly.jpg chicky_512.png fruits.jpg graf1.png home.jpg leuvenA.jpg messi5.jpg "
        "orange.jpg smarties.png squirrel_cls.jpg stuff.jpg"
      ).split()
    ],
  ),
}
# Each clip's file and the window of it kept (start, duration in seconds): about 6 s, as the
# issue's clips (tree.avi whole: 68 frames); Megamind's window holds its two cuts.
CLIPS = {
  "box.mp4.gz": (0, 6),
  "cup.mp4.gz": (0, 6),
  "tree.avi": (0, 30),  # 68 frames over 29.6 s
  "vtest.avi": (0, 6),
  "Megamind.avi": (5, 6.3),
}
CLIP_DIRS = {".gz": "usr/share/doc/opencv-doc/opencv4/html", "": OPENCV_DATA}


def unpack(package: str, debs: str) -> str:
  """The package's files under debs/x/PACKAGE, downloaded with apt-get if not there yet."""
  root = os.path.join(debs, "x", package)
  if os.path.isdir(root):
    return root
  found = glob.glob(os.path.join(debs, f"{package}_*.deb"))
  if not found:
    subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    found = glob.glob(os.path.join(debs, f"{package}_*.deb"))
  subprocess.run(["dpkg-deb", "-x", found[0], root + ".partial"], check=True)
  os.replace(root + ".partial", root)
  return root


def photo_file(root: str, path: str) -> str:
  """A wallpaper folder's largest image, or the file itself."""
  full = os.path.join(root, path)
  if os.path.isdir(full):
    return max(glob.glob(os.path.join(full, "*.*")), key=os.path.getsize)
  return full


def save_photo(src: str, dst: str) -> None:
  with Image.open(src) as image:
    image = ImageOps.exif_transpose(image).convert("RGB")
  scale = 256 / min(image.size)
  image = image.resize([round(side * scale) for side in image.size], Image.Resampling.LANCZOS)
  w, h = image.size
  cw, ch = min(w, 384), min(h, 384)
  left, top = (w - cw) // 2, (h - ch) // 2
  image.crop((left, top, left + cw, top + ch)).save(dst, quality=90)


def write_photos(table: dict, debs: str, out: str, prefix_of, sources: list) -> None:
  os.makedirs(out, exist_ok=True)
  for package, (licence, paths) in table.items():
    root = unpack(package, debs)
    for path in paths:
      src = photo_file(root, path)
      stem = os.path.basename(path.removesuffix("/contents/images"))  # a wallpaper's folder
      name = f"{prefix_of(package)}_{os.path.splitext(stem)[0]}.jpg"
      save_photo(src, os.path.join(out, name))
      sources.append(f"| {os.path.basename(out)}/{name} | `{package}`: `{path}` | {licence} |")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--debs", default=None, help="downloaded .deb files (default: OUT/debs)")
  args = parser.parse_args()
  debs = args.debs or os.path.join(args.out, "debs")
  os.makedirs(os.path.join(debs, "x"), exist_ok=True)
  sources = ["| file | source | licence |", "| --- | --- | --- |"]
  write_photos(HOLDOUT, debs, os.path.join(args.out, "holdout"), lambda p: p.split("-")[0], sources)
  extra = os.path.join(args.out, "extra_train")
  write_photos(EXTRA_TRAIN, debs, extra, lambda p: "opencv", sources)
  for src, name, licence in (
    (
      os.path.join(os.path.dirname(skimage.__file__), "data", "motorcycle_left.png"),
      "skimage_motorcycle_left.jpg",
      "CC0 (PyPI scikit-image)",
    ),
    (
      os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg"),
      "matplotlib_grace_hopper.jpg",
      "public domain (PyPI matplotlib)",
    ),
  ):
    save_photo(src, os.path.join(extra, name))
    sources.append(f"| extra_train/{name} | `{os.path.basename(src)}` | {licence} |")

  wide = os.path.join(args.out, "wide")
  for split, folders in (
    ("train", [os.path.join(images.SAMPLES_DIR, "train"), extra]),
    ("eval", [os.path.join(images.SAMPLES_DIR, "eval")]),
  ):
    os.makedirs(os.path.join(wide, split), exist_ok=True)
    for folder in folders:
      for name in os.listdir(folder):
        if name.endswith(".jpg"):
          shutil.copy(os.path.join(folder, name), os.path.join(wide, split, name))

  clips = os.path.join(args.out, "clips")
  os.makedirs(clips, exist_ok=True)
  root = unpack("opencv-doc", debs)
  for name, (start, duration) in CLIPS.items():
    stem, ext = os.path.splitext(name)
    src = os.path.join(root, CLIP_DIRS[ext if ext == ".gz" else ""], name)
    if ext == ".gz":
      with gzip.open(src) as f, open(os.path.join(debs, stem), "wb") as g:
        shutil.copyfileobj(f, g)
    whole = os.path.join(debs, stem) if ext == ".gz" else src
    dst = os.path.join(clips, os.path.splitext(os.path.basename(whole))[0] + ".mkv")
    cmd = [probe.ffmpeg_exe(), "-y", "-v", "error", "-ss", str(start), "-t", str(duration)]
    subprocess.run(cmd + ["-i", whole, "-an", "-c:v", "ffv1", dst], check=True)
    sources.append(
      f"| clips/{os.path.basename(dst)} | `opencv-doc`: `{src[len(root) + 1 :]}`, {duration} s "
      f"from {start} s (FFV1) | Apache-2.0 / BSD-3-Clause (debian/copyright) |"
    )
  with open(os.path.join(args.out, "SOURCES.md"), "w") as f:
    f.write("\n".join(sources) + "\n")
  print(f"wrote {args.out}: {len(sources) - 2} files")


if __name__ == "__main__":
  main()
