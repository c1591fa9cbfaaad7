"""XLA flags the project turns on by default, and per-executable options for forward passes.

Each command's `main()` calls `apply_defaults()` (through `cli.configure`) before JAX starts its
backends; a flag already named in `XLA_FLAGS` is left as the user set it.
"""

import os

# XLA:CPU schedules independent ops so that they overlap (faster training on CPU, see README's
# performance section). No effect on other platforms.
DEFAULTS = ("--xla_cpu_enable_concurrency_optimized_scheduler=true",)


def with_defaults(flags: str) -> str:
  """`flags` plus each default whose flag name it does not already contain."""
  names = {f.split("=", 1)[0] for f in flags.split()}
  extra = [f for f in DEFAULTS if f.split("=", 1)[0] not in names]
  return " ".join([flags, *extra]).strip()


def apply_defaults() -> None:
  os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""))


# XLA:CPU hands convolutions to YNNPACK by default. Its Eigen convolutions are faster for forward
# passes and YNNPACK's for the training step's kernel gradients (README, performance), so only the
# forward-only executables switch YNNPACK convolutions off.
_YNN_FUSIONS = "xla_cpu_experimental_ynn_fusion_type"
_FORWARD_YNN_FUSIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"


def forward_compiler_options() -> dict[str, str]:
  """`jax.jit(..., compiler_options=)` for functions that run the generator forward only; empty
  off CPU or when the user's XLA_FLAGS choose the YNNPACK fusions themselves."""
  import jax

  if jax.default_backend() != "cpu" or _YNN_FUSIONS in os.environ.get("XLA_FLAGS", ""):
    return {}
  return {_YNN_FUSIONS: _FORWARD_YNN_FUSIONS}
