"""Host input pipeline: tfds / image folder / embedded samples -> uint8 batches (colour conversion
and scaling happen on the device). Training batches are a pure function of (config, seed,
process slice, step), with `steps_per_epoch(config)` batches an epoch on every process, so a
resumed run sees a fresh run's batches (docs/reliability.md, "Exact resume").
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from pix2pix_jax import errors, images, parallel

log = logging.getLogger(__name__)


# Salts that keep the shuffle and the augmentation random streams apart.
_SHUFFLE_STREAM = 0
_AUGMENT_STREAM = 1


class DataError(errors.UserError, ValueError):
  """The data described by the config cannot be read: missing folder, no images, bad split."""


def hide_accelerators_from_tf() -> None:
  """TF only feeds the host; the accelerators belong to JAX (commands call this first)."""
  for kind in ("GPU", "TPU"):
    try:
      tf.config.set_visible_devices([], kind)
    except (RuntimeError, ValueError):  # already initialised, or no such device type
      pass


# --------------------------------------------------------------------------------------------
# Decoding.


def _decode_resized(data: bytes, size: int) -> np.ndarray:
  """Decode and resize (bicubic, to a square like the reference) to uint8 [size, size, 3]."""
  image = Image.fromarray(images.decode_image(data, min_size=size))
  if image.size != (size, size):
    image = image.resize((size, size), Image.Resampling.BICUBIC)
  return np.asarray(image, dtype=np.uint8)


def _decode_resized_tf(data: tf.Tensor, size: int) -> tf.Tensor:
  image = tf.numpy_function(
    functools.partial(_decode_resized, size=size), [data], tf.uint8, stateful=False
  )
  image.set_shape([size, size, 3])
  return image


# --------------------------------------------------------------------------------------------
# Folders.


@dataclasses.dataclass(frozen=True)
class FolderListing:
  """The readable images of one split of a folder, and the files that were skipped."""

  folder: str
  files: tuple[str, ...]  # absolute paths, sorted by relative path
  skipped: tuple[tuple[str, str], ...]  # (path, reason)


def _find_images(root: str) -> list[str]:
  found = []
  visited = set()
  for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
    real = os.path.realpath(dirpath)
    if real in visited:  # a symlink loop, or a second link to a folder already listed
      dirnames.clear()
      continue
    visited.add(real)
    dirnames.sort()
    for name in filenames:
      if name.lower().endswith(images.IMAGE_EXTENSIONS) and not name.startswith("."):
        found.append(os.path.join(dirpath, name))
  return sorted(found, key=lambda p: os.path.relpath(p, root))


def _hash_fraction(relative_path: str) -> float:
  """A stable number in [0, 1) from a path, the same on every machine and Python run."""
  digest = hashlib.sha256(relative_path.replace(os.sep, "/").encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def _check_readable(path: str) -> str | None:
  """None if the file decodes (at reduced scale, to be fast), else the reason it does not."""
  try:
    with open(path, "rb") as f:
      data = f.read()
    if not data:
      return "empty file"
    images.decode_image(data, min_size=1)
    return None
  except Exception as e:  # noqa: BLE001 - any decoder failure means "skip this file"
    return f"{type(e).__name__}: {e}"


@functools.lru_cache(maxsize=32)
def list_images(folder: str, split: str, eval_fraction: float) -> FolderListing:
  """The readable images of ``split`` ("train" or "eval") of ``folder``.

  If the folder has ``train/`` and ``eval/`` subfolders they are the splits; otherwise each file
  goes to eval when a hash of its relative path falls below ``eval_fraction``. Files that do not
  decode are skipped and reported once in the log. Cached per process.
  """
  if split not in ("train", "eval"):
    raise DataError(f"split must be 'train' or 'eval', got {split!r}")
  folder = os.path.abspath(os.path.expanduser(folder))
  if not os.path.isdir(folder):
    raise DataError(f"image folder {folder} does not exist or is not a directory")
  has_subfolders = all(os.path.isdir(os.path.join(folder, s)) for s in ("train", "eval"))
  if has_subfolders:
    root = os.path.join(folder, split)
    candidates = _find_images(root)
  else:
    root = folder
    candidates = [
      p
      for p in _find_images(root)
      if (_hash_fraction(os.path.relpath(p, root)) < eval_fraction) == (split == "eval")
    ]
  workers = min(32, 2 * (os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    reasons = list(pool.map(_check_readable, candidates))
  files = tuple(p for p, r in zip(candidates, reasons, strict=True) if r is None)
  skipped = tuple((p, r) for p, r in zip(candidates, reasons, strict=True) if r is not None)
  if skipped:
    path, reason = skipped[0]
    log.warning(
      "skipped %d unreadable files in %s (%s split): e.g. %s: %s",
      len(skipped),
      root,
      split,
      path,
      reason,
    )
  if not files:
    raise DataError(
      f"no readable image for the {split} split in folder {root}"
      f" (extensions {', '.join(images.IMAGE_EXTENSIONS)}; {len(skipped)} unreadable)"
    )
  return FolderListing(folder=root, files=files, skipped=skipped)


def _folder_path(config: ml_collections.ConfigDict) -> str:
  if config.data.source == "samples":
    return images.SAMPLES_DIR
  if not config.data.folder:
    raise DataError("config.data.folder must be set when config.data.source='folder'")
  return config.data.folder


def _folder_files(config: ml_collections.ConfigDict, split: str) -> tuple[str, ...]:
  files = list_images(_folder_path(config), split, float(config.data.eval_fraction))
  limit = config.data.max_train_examples if split == "train" else config.data.max_eval_examples
  return files.files[:limit] if limit >= 0 else files.files


# --------------------------------------------------------------------------------------------
# tfds.


def _tfds_builder(config: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  name = config.data.name
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  # An unprepared dataset's "Variant folder ... has no dataset_info.json" warning: the first
  # read of it raises DataError saying what to do instead.
  absl_logger.setLevel(max(level, logging.ERROR))
  try:
    return tfds.builder(name, data_dir=config.data.data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    first = str(e).strip().splitlines()[0]
    raise DataError(f"config.data.name={name!r}: {first} (in tfds or config.data.data_dir)") from e
  finally:
    absl_logger.setLevel(level)


def _not_prepared(builder: tfds.core.DatasetBuilder) -> DataError:
  """The one-line error for a tfds dataset whose files are not in its data_dir. (tfds's own
  `tfds build` command needs apache-beam, which tfds does not install.)"""
  name, root = builder.name, builder.data_dir_root
  prepare = f"tfds.builder('{name}', data_dir='{root}').download_and_prepare()"
  return DataError(
    f"tfds dataset {name} is not prepared in data_dir {root}: prepare it with "
    f'`python -c "import tensorflow_datasets as tfds; {prepare}"`, then train with '
    f"--config.data.data_dir={root}"
  )


def _tfds_split(split: str, limit: int) -> str:
  """The split with at most ``limit`` examples (-1: all), as a tfds split string."""
  if limit < 0:
    return split
  if "[" in split or "+" in split:
    raise DataError(
      f"cannot combine the split {split!r} with a max_*_examples limit; use one or the other"
    )
  return f"{split}[:{limit}]"


def _tfds_dataset(builder: tfds.core.DatasetBuilder, split: str) -> tf.data.Dataset:
  """Encoded images only: decoding is left for after any skipping."""
  try:
    ds = builder.as_dataset(
      split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
  except AssertionError as e:  # tfds's "could not find data in ..."
    if builder.is_prepared():
      raise
    raise _not_prepared(builder) from e
  return ds.map(lambda example: example["image"], num_parallel_calls=tf.data.AUTOTUNE)


def _count(ds: tf.data.Dataset) -> int:
  n = int(ds.cardinality())
  return n if n >= 0 else int(ds.reduce(np.int64(0), lambda count, _: count + 1))


def _tfds_num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  try:
    return int(builder.info.splits[split].num_examples)
  except (KeyError, ValueError):
    # No split metadata (tfds.testing.mock_data): count the records, without decoding.
    return _count(_tfds_dataset(builder, split))


# --------------------------------------------------------------------------------------------
# Public API.


def _process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise DataError(f"process_index {index} is not in [0, {count})")
  return index, count


def num_train_examples(config: ml_collections.ConfigDict) -> int:
  """Training examples over all processes, after ``data.max_train_examples``."""
  if config.data.source == "tfds":
    builder = _tfds_builder(config)
    n = _tfds_num_examples(builder, config.data.train_split)
    limit = config.data.max_train_examples
    return min(n, limit) if limit >= 0 else n
  if config.data.source in ("folder", "samples"):
    return len(_folder_files(config, "train"))
  raise DataError(f"unknown config.data.source {config.data.source!r}")


def steps_per_epoch(config: ml_collections.ConfigDict) -> int:
  """Global batches per epoch: the remainder of each epoch's shuffled order is dropped."""
  steps = num_train_examples(config) // config.batch_size
  if steps < 1:
    raise DataError(
      f"config.batch_size={config.batch_size} exceeds the {num_train_examples(config)}"
      " training examples"
    )
  return steps


def _seed(*parts: int | tf.Tensor) -> tf.Tensor:
  """A stateless RNG seed (shape [2]) derived from integers, one fold-in at a time."""
  seed = tf.constant([0, 0], tf.int64)
  for part in parts:
    seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(part, tf.int64))
  return seed


def _train_epochs(
  config: ml_collections.ConfigDict, process_index: int, process_count: int, per_epoch: int
) -> tuple[Callable[[tf.Tensor], tf.data.Dataset], Callable[[tf.Tensor], tf.Tensor]]:
  """(epoch -> this process's records for that epoch, record -> encoded bytes)."""
  seed = int(config.seed)
  if config.data.source == "tfds":
    builder = _tfds_builder(config)
    split = tfds.split_for_jax_process(
      _tfds_split(config.data.train_split, config.data.max_train_examples),
      process_index=process_index,
      process_count=process_count,
    )
    records = _tfds_dataset(builder, split)
    buffer = max(1, int(config.data.shuffle_buffer))

    def epoch_records(epoch: tf.Tensor) -> tf.data.Dataset:
      # tfds shuffles examples when it writes the dataset; the buffer reshuffles per epoch.
      shuffle_seed = _seed(seed, _SHUFFLE_STREAM, epoch)[0]
      shuffled = records.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
      return shuffled.take(per_epoch)

    return epoch_records, lambda data: data

  files = _folder_files(config, "train")
  paths = tf.constant(files)
  n = len(files)

  def epoch_paths(epoch: tf.Tensor) -> tf.data.Dataset:
    # One global permutation per epoch; each process takes its own contiguous part.
    order = tf.random.experimental.stateless_shuffle(
      tf.range(n), seed=_seed(seed, _SHUFFLE_STREAM, epoch)
    )
    mine = order[process_index * per_epoch : (process_index + 1) * per_epoch]
    return tf.data.Dataset.from_tensor_slices(tf.gather(paths, mine))

  return epoch_paths, tf.io.read_file


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.autotune.enabled = True
  return options


def create_train_iterator(
  config: ml_collections.ConfigDict,
  *,
  start_step: int = 0,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Endless ``{"image": uint8 [batch_size // process_count, crop, crop, 3]}`` batches.

  Augmentation as in Pix2Pix: resize to load_size x load_size, random crop_size crop, random
  horizontal flip (``data.flip``). Starting at ``start_step`` yields exactly what a fresh
  iterator yields from batch ``start_step`` on.
  """
  process_index, process_count = _process(process_index, process_count)
  local_batch = parallel.local_batch_size(config.batch_size, process_count)
  steps = steps_per_epoch(config)
  per_epoch = steps * local_batch  # examples per process per epoch
  load, crop = int(config.data.load_size), int(config.data.crop_size)
  if crop > load:
    raise DataError(f"data.crop_size={crop} exceeds data.load_size={load}")
  seed, flip = int(config.seed), bool(config.data.flip)
  epoch_records, read = _train_epochs(config, process_index, process_count, per_epoch)

  def tag(epoch: tf.Tensor) -> tf.data.Dataset:
    return epoch_records(epoch).enumerate().map(lambda position, record: (epoch, position, record))

  def load_and_augment(epoch: tf.Tensor, position: tf.Tensor, record: tf.Tensor):
    image = _decode_resized_tf(read(record), load)
    key = _seed(seed, _AUGMENT_STREAM, process_index, epoch, position)
    crop_key, flip_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    image = tf.image.stateless_random_crop(image, [crop, crop, 3], seed=crop_key)
    if flip:
      image = tf.image.stateless_random_flip_left_right(image, seed=flip_key)
    return {"image": image}

  start_epoch, offset = divmod(int(start_step), steps)
  ds = tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max).flat_map(tag)
  ds = ds.skip(offset * local_batch)  # before reading: resuming costs no decoding
  ds = ds.map(load_and_augment, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(local_batch, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(_options())
  return ds.as_numpy_iterator()


def create_eval_iterator(
  config: ml_collections.ConfigDict,
  *,
  process_index: int | None = None,
  process_count: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """One pass over the eval split, resized to crop_size, in a fixed order.

  Batches have a fixed shape ``[batch_size // process_count, crop, crop, 3]``; padding examples
  (zeros) fill the last ones, with ``"mask"`` (bool) False. Every process yields the same number
  of batches, so multi-host evaluation stays in step.
  """
  process_index, process_count = _process(process_index, process_count)
  local_batch = parallel.local_batch_size(config.batch_size, process_count)
  crop = int(config.data.crop_size)
  limit = int(config.data.max_eval_examples)
  if config.data.source == "tfds":
    builder = _tfds_builder(config)
    split = _tfds_split(config.data.eval_split, limit)
    total = _tfds_num_examples(builder, config.data.eval_split)
    total = min(total, limit) if limit >= 0 else total
    records = _tfds_dataset(
      builder,
      tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count),
    )
    if limit >= 0:
      records = records.take(limit)
    local = _count(records)
    read = lambda data: data
  elif config.data.source in ("folder", "samples"):
    files = _folder_files(config, "eval")
    total = len(files)
    bounds = np.linspace(0, total, process_count + 1).round().astype(int)
    mine = files[bounds[process_index] : bounds[process_index + 1]]
    local = len(mine)
    records = tf.data.Dataset.from_tensor_slices(tf.constant(mine, dtype=tf.string))
    read = tf.io.read_file
  else:
    raise DataError(f"unknown config.data.source {config.data.source!r}")
  num_batches = math.ceil(max(local, math.ceil(total / process_count)) / local_batch)
  padding = num_batches * local_batch - local

  ds = records.map(
    lambda record: {"image": _decode_resized_tf(read(record), crop), "mask": tf.constant(True)},
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  pad = {"image": tf.zeros([crop, crop, 3], tf.uint8), "mask": tf.constant(False)}
  ds = ds.concatenate(tf.data.Dataset.from_tensors(pad).repeat(padding))
  ds = ds.batch(local_batch, drop_remainder=True)
  ds = ds.prefetch(tf.data.AUTOTUNE).with_options(_options())
  return ds.as_numpy_iterator()
