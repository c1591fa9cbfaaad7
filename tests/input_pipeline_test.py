"""Tests for the input pipeline: shapes, sources, odd and broken files, exact resume, slices."""

import io
import itertools
import logging
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import tiny_config
from PIL import Image

from pix2pix_jax import images, input_pipeline

# Distinct solid colours: resizing and cropping keep them, so each output names its source.
COLOURS = [(20 * i + 5, 250 - 20 * i, (70 * i) % 256) for i in range(13)]


def _solid(path, colour, size=(40, 30)):
  Image.new("RGB", size, colour).save(path)


def _colour_of(image):
  return tuple(int(v) for v in np.median(image.reshape(-1, 3), axis=0))


def _identity_config(folder, **overrides):
  """No resize change, no flip: outputs are the source colours, so examples can be counted."""
  return tiny_config(
    **{
      "data.source": "folder",
      "data.folder": str(folder),
      "data.load_size": 16,
      "data.crop_size": 16,
      "data.flip": False,
      **overrides,
    }
  )


def _identity_folder(root, n_train=8, n_eval=5):
  for split, n, offset in (("train", n_train, 0), ("eval", n_eval, n_train)):
    os.makedirs(root / split / "sub", exist_ok=True)
    for i in range(n):
      _solid(root / split / ("sub" if i % 2 else "") / f"{i:02d}.png", COLOURS[offset + i])
  return root


def _take(iterator, n):
  return [batch["image"] for batch in itertools.islice(iterator, n)]


def test_samples_train_shapes_and_exact_resume_across_epochs():
  config = tiny_config(**{"data.source": "samples", "batch_size": 4})
  assert input_pipeline.num_train_examples(config) == 17
  assert input_pipeline.steps_per_epoch(config) == 4
  fresh = _take(input_pipeline.create_train_iterator(config), 10)
  assert all(b.shape == (4, 32, 32, 3) and b.dtype == np.uint8 for b in fresh)
  assert not np.array_equal(fresh[0], fresh[4])  # epoch 1 is reshuffled / re-augmented
  for start in (3, 6):  # resumes inside epoch 0 (crossing into 1) and inside epoch 1
    resumed = _take(input_pipeline.create_train_iterator(config, start_step=start), 10 - start)
    for got, want in zip(resumed, fresh[start:], strict=True):
      np.testing.assert_array_equal(got, want)
  other_seed = _take(input_pipeline.create_train_iterator(config.copy_and_resolve_references()), 1)
  np.testing.assert_array_equal(other_seed[0], fresh[0])  # same config -> same data
  config.seed = 1
  assert not np.array_equal(_take(input_pipeline.create_train_iterator(config), 1)[0], fresh[0])


def test_samples_eval_pads_last_batch():
  config = tiny_config(**{"data.source": "samples", "batch_size": 3})
  batches = list(input_pipeline.create_eval_iterator(config))
  assert [b["image"].shape for b in batches] == [(3, 32, 32, 3)] * 2
  np.testing.assert_array_equal(np.concatenate([b["mask"] for b in batches]), [1, 1, 1, 1, 0, 0])
  assert batches[1]["image"][1:].max() == 0  # padding is zeros
  assert batches[0]["image"].std() > 10  # real photographs, not blank


def test_mock_places365_train_and_eval():
  with tfds.testing.mock_data(num_examples=10):
    config = tiny_config(**{"data.source": "tfds", "data.name": "places365_small"})
    config.batch_size = 3
    assert input_pipeline.num_train_examples(config) == 10
    assert input_pipeline.steps_per_epoch(config) == 3
    fresh = _take(input_pipeline.create_train_iterator(config), 7)
    assert all(b.shape == (3, 32, 32, 3) and b.dtype == np.uint8 for b in fresh)
    resumed = _take(input_pipeline.create_train_iterator(config, start_step=2), 5)
    for got, want in zip(resumed, fresh[2:], strict=True):
      np.testing.assert_array_equal(got, want)
    config.data.max_train_examples = 7
    assert input_pipeline.steps_per_epoch(config) == 2

    batches = list(input_pipeline.create_eval_iterator(config))  # max_eval_examples = 8
    assert [b["image"].shape for b in batches] == [(3, 32, 32, 3)] * 3
    assert int(sum(b["mask"].sum() for b in batches)) == 8


def test_folder_with_odd_and_broken_files(tmp_path, caplog):
  root = tmp_path / "photos"
  os.makedirs(root / "nested" / "deeper")
  _solid(root / "plain.jpg", (200, 30, 30), size=(50, 40))
  _solid(root / "nested" / "UPPER.JPEG", (30, 200, 30))
  Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(root / "cmyk.jpg")  # red in CMYK
  Image.fromarray(np.full((30, 40), 32896, np.uint16)).save(root / "gray16.png")
  Image.new("L", (40, 30), 90).save(root / "gray.png")
  Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(root / "clear.png")  # fully transparent
  Image.new("RGB", (40, 30), (10, 20, 200)).convert("P", palette=Image.Palette.ADAPTIVE).save(
    root / "nested" / "palette.png"
  )
  Image.new("RGB", (8, 6), (90, 90, 10)).save(root / "nested" / "deeper" / "tiny.bmp")
  Image.new("RGB", (2400, 1600), (60, 120, 180)).save(root / "large.jpg", quality=70)
  # Landscape with a red left half, stored with EXIF orientation 6 (display rotated 90 deg CW).
  rotated = np.zeros((20, 40, 3), np.uint8)
  rotated[:, :20] = (255, 0, 0)
  rotated[:, 20:] = (0, 0, 255)
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(rotated).save(root / "rotated.jpg", exif=exif, quality=95)
  whole = io.BytesIO()
  Image.new("RGB", (64, 64), (1, 2, 3)).save(whole, "JPEG")
  (root / "truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
  (root / "empty.jpg").write_bytes(b"")
  (root / "notes.png").write_text("not an image")
  (root / "readme.txt").write_text("ignored: not an image extension")

  with caplog.at_level(logging.WARNING):
    listing = input_pipeline.list_images(str(root), "train", 0.0)
  names = sorted(os.path.basename(p) for p in listing.files)
  assert names == sorted(
    ["plain.jpg", "UPPER.JPEG", "cmyk.jpg", "gray16.png", "gray.png", "clear.png"]
    + ["palette.png", "tiny.bmp", "large.jpg", "rotated.jpg"]
  )
  assert sorted(os.path.basename(p) for p, _ in listing.skipped) == [
    "empty.jpg",
    "notes.png",
    "truncated.jpg",
  ]
  assert "skipped 3 unreadable files in" in caplog.text

  def decoded(name):
    return images.decode_image((root / name).read_bytes())

  np.testing.assert_allclose(decoded("cmyk.jpg")[20, 20], (255, 0, 0), atol=3)
  np.testing.assert_array_equal(decoded("gray16.png")[0, 0], (128, 128, 128))
  np.testing.assert_array_equal(decoded("clear.png")[0, 0], (255, 255, 255))  # on white
  np.testing.assert_array_equal(decoded("nested/palette.png")[0, 0], (10, 20, 200))
  upright = decoded("rotated.jpg")
  assert upright.shape == (40, 20, 3)  # EXIF orientation honoured: portrait now
  assert upright[5, 10, 0] > 200 and upright[5, 10, 2] < 50  # top is the red half
  assert upright[35, 10, 2] > 200 and upright[35, 10, 0] < 50
  big = images.decode_image((root / "large.jpg").read_bytes(), min_size=300)
  assert big.shape == (400, 600, 3)  # decoded at 1/4 scale by draft mode

  config = tiny_config(**{"data.source": "folder", "data.folder": str(root)})
  config.data.eval_fraction = 0.0
  config.batch_size = 5
  assert input_pipeline.num_train_examples(config) == 10
  batches = _take(input_pipeline.create_train_iterator(config), 3)
  assert [b.shape for b in batches] == [(5, 32, 32, 3)] * 3


def test_folder_hash_split_is_deterministic_and_disjoint(tmp_path):
  for i in range(40):
    _solid(tmp_path / f"{i:03d}.png", COLOURS[i % len(COLOURS)], size=(8, 8))
  train = input_pipeline.list_images(str(tmp_path), "train", 0.25).files
  evals = input_pipeline.list_images(str(tmp_path), "eval", 0.25).files
  assert not set(train) & set(evals) and len(train) + len(evals) == 40
  assert 3 <= len(evals) <= 18  # about a quarter
  assert evals == input_pipeline.list_images(str(tmp_path), "eval", 0.250001).files[: len(evals)]


def test_process_slices_are_disjoint_and_cover(tmp_path):
  config = _identity_config(_identity_folder(tmp_path))
  seen = []
  for index in range(2):
    it = input_pipeline.create_train_iterator(config, process_index=index, process_count=2)
    epoch = np.concatenate(_take(it, input_pipeline.steps_per_epoch(config)))
    assert epoch.shape == (4, 16, 16, 3)  # 8 examples / 2 processes per epoch
    seen.append({_colour_of(image) for image in epoch})
  assert not seen[0] & seen[1]
  assert seen[0] | seen[1] == set(COLOURS[:8])

  real = []
  for index in range(2):
    batches = list(
      input_pipeline.create_eval_iterator(config, process_index=index, process_count=2)
    )
    assert len(batches) == 2  # 5 eval examples, 3 on the bigger process, 2 per batch
    for batch in batches:
      assert batch["image"].shape == (2, 16, 16, 3) and batch["mask"].dtype == bool
      real += [_colour_of(image) for image in batch["image"][batch["mask"]]]
  assert sorted(real) == sorted(COLOURS[8:13])


def test_one_epoch_visits_each_example_once(tmp_path):
  config = _identity_config(_identity_folder(tmp_path), batch_size=2)
  it = input_pipeline.create_train_iterator(config)
  epochs = [np.concatenate(_take(it, 4)) for _ in range(3)]
  orders = [[_colour_of(image) for image in epoch] for epoch in epochs]
  assert all(sorted(order) == sorted(COLOURS[:8]) for order in orders)
  assert len({tuple(order) for order in orders}) > 1  # reshuffled per epoch


def test_bad_configs_raise(tmp_path):
  config = tiny_config(**{"data.source": "samples", "batch_size": 3})
  with pytest.raises(ValueError, match="batch_size"):
    input_pipeline.create_train_iterator(config, process_index=0, process_count=2)
  with pytest.raises(ValueError, match="batch_size"):
    input_pipeline.create_eval_iterator(config, process_index=0, process_count=2)
  (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 nope")
  empty = tiny_config(**{"data.source": "folder", "data.folder": str(tmp_path)})
  with pytest.raises(ValueError, match=str(tmp_path)):
    input_pipeline.num_train_examples(empty)
