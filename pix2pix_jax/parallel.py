"""Data parallelism: one ("data",) mesh over every device of every process.

The batch is sharded along "data" and the train state is replicated, so under
`jax.jit` every reduction over the batch (losses, BatchNorm statistics) is a
reduction over the global batch: the modern, implicit form of `pmap`'s psum.
"""

from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P


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


def local_batch_size(global_batch_size: int) -> int:
  """The per-process share of the global batch; it must split evenly over devices."""
  if global_batch_size % jax.device_count():
    raise ValueError(
      f"config.batch_size={global_batch_size} must be divisible by the number of devices "
      f"({jax.device_count()})"
    )
  return global_batch_size // jax.process_count()
