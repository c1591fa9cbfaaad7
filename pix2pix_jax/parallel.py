"""Data parallelism: one ("data",) mesh over every device of every process. The batch is sharded
along "data" and the state replicated, so under `jax.jit` every reduction over the batch (losses,
BatchNorm statistics) is over the global batch.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from pix2pix_jax import errors


class BatchSizeError(errors.UserError, ValueError):
  """The batch size does not split over the processes and devices."""


def make_mesh(devices: list | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh named "data" over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Explicit,), devices=devices)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis split over "data"."""
  return NamedSharding(mesh, P("data"))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def to_global(batch: Any, mesh: jax.sharding.Mesh) -> Any:
  """Process-local numpy batch (a pytree) -> global jax.Arrays sharded over "data".

  Each process passes its own slice; the global batch is their concatenation in
  process order.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def to_host(tree: Any) -> Any:
  """Fully-replicated or addressable jax.Arrays -> numpy (for logging)."""
  return jax.tree.map(np.asarray, jax.device_get(tree))


def local_batch_size(global_batch_size: int, process_count: int | None = None) -> int:
  """The per-process share of the global batch (`process_count` defaults to jax's). With jax's
  own process count, the batch must also split evenly over every device."""
  processes = jax.process_count() if process_count is None else process_count
  if process_count is None and global_batch_size % jax.device_count():
    raise BatchSizeError(
      f"config.batch_size={global_batch_size} must be divisible by the number of devices "
      f"({jax.device_count()})"
    )
  if global_batch_size <= 0 or global_batch_size % processes:
    raise BatchSizeError(
      f"config.batch_size={global_batch_size} must be a positive multiple of the process"
      f" count ({processes})"
    )
  return global_batch_size // processes


def device_multiple(batch_size: int) -> int:
  """`batch_size` rounded up to a positive multiple of the device count (fixed-shape batches
  for inference, padded at the end)."""
  devices = jax.device_count()
  return max(1, -(-batch_size // devices)) * devices
