"""Multi-host start-up: `jax.distributed.initialize` from flags or the cluster environment."""

import os

import jax
from absl import flags, logging

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (multi-host); env JAX_COORDINATOR_ADDRESS"
  )
  flags.DEFINE_integer("num_processes", None, "Number of processes; env JAX_NUM_PROCESSES.")
  flags.DEFINE_integer("process_id", None, "This process's index; env JAX_PROCESS_ID.")
  flags.DEFINE_bool(
    "distributed",
    False,
    "Initialise jax.distributed from the cluster environment (SLURM, TPU pod, ...).",
  )


def initialize_from_flags() -> None:
  """Initialises jax.distributed if asked to by flags or environment; no-op otherwise."""
  address = FLAGS.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num = FLAGS.num_processes or _env_int("JAX_NUM_PROCESSES")
  pid = FLAGS.process_id if FLAGS.process_id is not None else _env_int("JAX_PROCESS_ID")
  if address or num:
    # Only affects the CPU backend: lets CPU processes (e.g. on one machine) run collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      coordinator_address=address,
      num_processes=num,
      process_id=pid,
      heartbeat_timeout_seconds=int(os.environ.get("PIX2PIX_HEARTBEAT_TIMEOUT", "30")),
    )
  elif FLAGS.distributed:
    jax.distributed.initialize()
  else:
    return
  logging.info(
    "process %d of %d, %d local devices of %d",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value else None
