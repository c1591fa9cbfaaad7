"""XLA flags the project turns on by default, set before JAX starts its backends.

Importing `pix2pix_jax` calls `apply_defaults()`. A flag already named in `XLA_FLAGS` is left
as the user set it; once a backend is running, changes to `XLA_FLAGS` have no effect.
`forward_compiler_options()` are per-executable options for the jit'd generator forward passes.
"""

import os

# XLA:CPU schedules independent ops so that they overlap: 8% more training throughput at
# 256x256, batch 4, on 2 cores (see README, Performance). No effect on other platforms.
DEFAULTS = ("--xla_cpu_enable_concurrency_optimized_scheduler=true",)


def with_defaults(flags: str) -> str:
  """`flags` plus each default whose flag name it does not already contain."""
  names = {f.split("=", 1)[0] for f in flags.split()}
  extra = [f for f in DEFAULTS if f.split("=", 1)[0] not in names]
  return " ".join([flags, *extra]).strip()


def apply_defaults() -> None:
  os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""))


# XLA:CPU hands convolutions to YNNPACK by default. On forward passes its Eigen convolutions are
# faster (generator inference at 256x256: +11% at batch 4, +19% at batch 16; quickstart video
# model +7%), while the training step is 9% slower without YNNPACK (its kernel gradients on large
# maps are about 2x faster), so only the forward-only executables switch it off.
_YNN_FUSIONS = "xla_cpu_experimental_ynn_fusion_type"
_FORWARD_YNN_FUSIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"


def forward_compiler_options() -> dict[str, str]:
  """`jax.jit(..., compiler_options=)` for functions that run the generator forward only; empty
  off CPU or when the user's XLA_FLAGS choose the YNNPACK fusions themselves."""
  import jax

  if jax.default_backend() != "cpu" or _YNN_FUSIONS in os.environ.get("XLA_FLAGS", ""):
    return {}
  return {_YNN_FUSIONS: _FORWARD_YNN_FUSIONS}
