"""Test set-up: 4 virtual CPU devices, so data-parallel code runs really sharded; the fixtures."""

import os
import tempfile

# Must happen before jax initialises its backends.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Many tests (and their subprocesses, which inherit this) compile the same tiny networks:
# jax's persistent compilation cache compiles each program once per machine.
os.environ.setdefault(
  "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "pix2pix_jax_test_xla_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The tests' networks are tiny: XLA's compile time, not the programs', is most of the suite's
# time, and most of that is optimisation passes (the suite takes about a third less time
# without them; docs/performance.md). Every program still runs and is checked; the benchmarks
# and the commands users run keep XLA's optimisations.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import pytest  # noqa: E402

# helpers.check_output asserts: its failures are explained as the test files' own are.
pytest.register_assert_rewrite("helpers")

from helpers import make_colorizer, tiny_config  # noqa: E402

# The shared helpers (the tiny model, sweep files, processes, clips, ...) are in helpers.py.


@pytest.fixture
def make_tiny_config():
  return tiny_config


@pytest.fixture(scope="module")
def colorizer():
  """A Colorizer of a random tiny generator, batches of 4 (the video tests'); files that need
  another define their own."""
  return make_colorizer(tiny_config(), batch_size=4)


# `make test` sends whole files to the workers (`--dist loadfile`: a file's module fixtures are
# built once), the costliest first so that no long file starts last. Seconds per file, measured
# on 2 cores with 3 workers (docs/performance.md); files not listed follow in collection order.
FILE_SECONDS = {
  "reliability_test.py": 320,
  "slurm_test.py": 260,
  "train_test.py": 200,
  "distributed_test.py": 140,
  "hints_test.py": 140,
  "models_test.py": 125,
  "accelerator_test.py": 110,
  "chunked_test.py": 105,
  "install_test.py": 105,
  "train_cli_test.py": 100,
  "learning_test.py": 90,
  "benchmark_test.py": 85,
  "package_test.py": 80,
  "hints_evaluate_test.py": 75,
  "video_test.py": 75,
  "sweep_test.py": 70,
  "accelerator_report_test.py": 60,
  "workdir_lock_test.py": 55,
  "checkpoint_test.py": 50,
  "evaluate_test.py": 50,
  "hint_policy_test.py": 45,
}


def pytest_collection_modifyitems(items):
  items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))
