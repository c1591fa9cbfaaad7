"""Multi-host start-up: `jax.distributed.initialize` from flags or the cluster environment.

Several tasks of one SLURM job step (`srun --ntasks=N`, N > 1) always form one program: the
tasks share the workdir, so N independent runs would only corrupt each other's checkpoints.
"""

import logging
import os

import jax
from absl import flags

FLAGS = flags.FLAGS
log = logging.getLogger(__name__)


def define_flags() -> None:
  """The multi-host flags; each also takes the other commands' hyphenated spelling
  (--coordinator-address, --num-processes, --process-id)."""
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
  for name in ("coordinator_address", "num_processes", "process_id"):
    flags.DEFINE_alias(name.replace("_", "-"), name)


def initialize_from_flags() -> None:
  """Initialises jax.distributed if asked to by flags or environment; no-op otherwise."""
  initialize(
    coordinator_address=FLAGS.coordinator_address,
    num_processes=FLAGS.num_processes,
    process_id=FLAGS.process_id,
    from_cluster=FLAGS.distributed,
  )


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  from_cluster: bool = False,
) -> None:
  """jax.distributed from explicit values (else JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
  JAX_PROCESS_ID), from the cluster's environment (`from_cluster`, or always for several tasks
  of one SLURM step), or not at all (one process)."""
  address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num = num_processes or _env_int("JAX_NUM_PROCESSES")
  pid = process_id if process_id is not None else _env_int("JAX_PROCESS_ID")
  if address or num:
    # Only affects the CPU backend: lets CPU processes (e.g. on one machine) run collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
      coordinator_address=address,
      num_processes=num,
      process_id=pid,
      heartbeat_timeout_seconds=_heartbeat_timeout(),
    )
  elif from_cluster or slurm_step_tasks() > 1:
    if not from_cluster:
      log.info("%d SLURM tasks in this job step: one program over them", slurm_step_tasks())
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(heartbeat_timeout_seconds=_heartbeat_timeout())
  else:
    return
  if jax.process_count() > 1 and jax.default_backend() == "cpu":
    # Process 0 alone writes jax's persistent compilation cache and the others' keys differ, so
    # with a warm cache process 0 runs cached programs while the others compile, and the first
    # collective's gloo context times out (docs/performance.md).
    jax.config.update("jax_enable_compilation_cache", False)
  log.info(
    "process %d of %d, %d local devices of %d",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
  )


def slurm_step_tasks() -> int:
  """The task count of the SLURM job step this process belongs to (srun sets it; 0 outside
  SLURM and in a batch script, which is one task whatever the allocation's --ntasks)."""
  return _env_int("SLURM_STEP_NUM_TASKS") or 0


def _heartbeat_timeout() -> int:
  return int(os.environ.get("PIX2PIX_HEARTBEAT_TIMEOUT", "30"))


def _env_int(name: str) -> int | None:
  value = os.environ.get(name)
  return int(value) if value else None
