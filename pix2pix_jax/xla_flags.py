"""XLA flags the project turns on by default, and per-executable options for forward passes.

Each command's `main()` calls `apply_defaults()` (through `cli.configure`) before JAX starts its
backends; a flag already named in `XLA_FLAGS` is left as the user set it.
"""

import os

# XLA:CPU schedules independent ops so that they overlap (faster training on CPU, see
# docs/performance.md). No effect on other platforms.
DEFAULTS = ("--xla_cpu_enable_concurrency_optimized_scheduler=true",)


def with_defaults(flags: str) -> str:
  """`flags` plus each default whose flag name it does not already contain."""
  names = {f.split("=", 1)[0] for f in flags.split()}
  extra = [f for f in DEFAULTS if f.split("=", 1)[0] not in names]
  return " ".join([flags, *extra]).strip()


def apply_defaults() -> None:
  os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""))


# XLA:CPU hands convolutions to YNNPACK by default. Its Eigen convolutions are faster for forward
# passes everywhere measured, so the forward-only executables switch YNNPACK convolutions off. For
# the training step it depends on the CPU (docs/performance.md): YNNPACK's large-map kernel
# gradients win on the AMD EPYC measured, Eigen wins the whole step on the Intel Xeon measured.
_YNN_FUSIONS = "xla_cpu_experimental_ynn_fusion_type"
_NO_YNN_CONVOLUTIONS = {
  _YNN_FUSIONS: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
}
_EIGEN_TRAINING_VENDORS = ("GenuineIntel",)


def _cpu_and_no_user_choice() -> bool:
  import jax

  return jax.default_backend() == "cpu" and _YNN_FUSIONS not in os.environ.get("XLA_FLAGS", "")


def forward_compiler_options() -> dict[str, str]:
  """`jax.jit(..., compiler_options=)` for functions that run the generator forward only; empty
  off CPU or when the user's XLA_FLAGS choose the YNNPACK fusions themselves."""
  return dict(_NO_YNN_CONVOLUTIONS) if _cpu_and_no_user_choice() else {}


def cpuinfo_field(name: str) -> str:
  """The first value of `name` in Linux's /proc/cpuinfo ("vendor_id", "model name"), else ""."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith(name):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return ""


def cpu_vendor() -> str:
  """The CPU's vendor id as Linux reports it ("GenuineIntel", "AuthenticAMD"), else ""."""
  return cpuinfo_field("vendor_id")


def train_compiler_options(vendor: str | None = None) -> dict[str, str]:
  """`jax.jit(..., compiler_options=)` for the training step: YNNPACK convolutions off on CPUs of
  `vendor` (default: this machine's) where that was measured faster, else empty (also off CPU
  and when the user's XLA_FLAGS choose the YNNPACK fusions)."""
  vendor = cpu_vendor() if vendor is None else vendor
  if vendor in _EIGEN_TRAINING_VENDORS and _cpu_and_no_user_choice():
    return dict(_NO_YNN_CONVOLUTIONS)
  return {}
