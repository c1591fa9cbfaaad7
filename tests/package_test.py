"""The package's shape: a one-way import graph, no import-time side effects, a light core."""

import ast
import json
import os
import pkgutil
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO, subprocess_env

import pix2pix_jax

PACKAGE_DIR = os.path.dirname(pix2pix_jax.__file__)


def _modules() -> dict[str, str]:
  """Every module of the package: dotted name -> file."""
  found = {"pix2pix_jax": os.path.join(PACKAGE_DIR, "__init__.py")}
  for info in pkgutil.walk_packages([PACKAGE_DIR], prefix="pix2pix_jax."):
    path = os.path.join(info.module_finder.path, info.name.rsplit(".", 1)[-1])
    found[info.name] = os.path.join(path, "__init__.py") if info.ispkg else path + ".py"
  return found


def _imports(path: str, modules: dict[str, str]) -> set[str]:
  """The package's modules that the file at `path` imports, at any depth (lazy imports too)."""
  edges = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Import):
      edges.update(a.name for a in node.names if a.name in modules)
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      if node.module not in modules:
        continue
      for alias in node.names:
        child = f"{node.module}.{alias.name}"
        edges.add(child if child in modules else node.module)
  return edges


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 1:
        return stack[stack.index(nxt) :] + [nxt]
      if nxt not in state and (found := visit(nxt)):
        return found
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state and (found := visit(node)):
      return found
  return None


def test_the_import_graph_has_no_cycle():
  modules = _modules()
  assert "pix2pix_jax.models.conv" in modules and "pix2pix_jax.colorize.video.source" in modules
  assert {f"pix2pix_jax.hints.{m}" for m in ("device", "files", "raster")} <= set(modules)
  graph = {}
  for name, path in modules.items():
    # A package's own __init__ re-exporting its submodules is not an edge back up.
    graph[name] = {m for m in _imports(path, modules) if not name.startswith(m + ".")}
  assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_one():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


def _run(code: str, **env) -> subprocess.CompletedProcess:
  result = subprocess.run(
    [sys.executable, "-c", textwrap.dedent(code)],
    env=subprocess_env(**env),
    capture_output=True,
    text=True,
    cwd=REPO,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.mark.integration
def test_importing_every_module_changes_no_setting():
  _run(
    """
    import importlib, logging, os, pkgutil
    import jax
    import tensorflow as tf
    from absl import logging as absl_logging
    # Third-party imports that touch logging themselves (tfds adds a root handler) come first:
    # what is checked is what this package's modules do.
    import clu.metric_writers, decord, matplotlib.pyplot, orbax.checkpoint, tensorflow_datasets

    calls = []
    tf.config.set_visible_devices = lambda *a, **k: calls.append(("set_visible_devices", a))
    environ = dict(os.environ)
    config = {k: getattr(jax.config, k) for k in ("jax_enable_x64", "jax_platforms",
              "jax_default_matmul_precision", "jax_cpu_collectives_implementation")}
    verbosity, handlers = absl_logging.get_verbosity(), list(logging.root.handlers)
    levels = {n: logging.getLogger(n).level for n in ("", "absl", "pix2pix_jax")}

    import pix2pix_jax
    names = [m.name for m in pkgutil.walk_packages(pix2pix_jax.__path__, "pix2pix_jax.")]
    for name in names:
      if not name.endswith("__main__"):
        importlib.import_module(name)
    assert len(names) > 30, names
    assert dict(os.environ) == environ, set(os.environ.items()) ^ set(environ.items())
    assert {k: getattr(jax.config, k) for k in config} == config
    assert absl_logging.get_verbosity() == verbosity and logging.root.handlers == handlers
    assert {n: logging.getLogger(n).level for n in levels} == levels
    assert not calls, calls
    """
  )


def test_the_hints_package_itself_imports_no_jax_or_numpy():
  # Its config-level names (enabled, input_channels, HintsError) are used all over; the device
  # code, hint files and rasterising are submodules, imported where they are used.
  result = _run(
    """
    import sys
    from pix2pix_jax import hints
    assert hints.input_channels.__module__ == "pix2pix_jax.hints"
    heavy = [m for m in ("jax", "numpy", "PIL", "pix2pix_jax.hints.device") if m in sys.modules]
    assert not heavy, heavy
    print("light hints ok")
    """
  )
  assert "light hints ok" in result.stdout


# The light core must work where these cannot be imported. A None entry in sys.modules is what
# Python uses for that: `import tensorflow` raises ModuleNotFoundError and
# `importlib.util.find_spec("tensorflow")` says there is none, as for a package not installed.
_BLOCKER = """
import sys

for name in ("tensorflow", "tensorflow_datasets", "decord", "torch"):
  sys.modules[name] = None
"""


@pytest.mark.integration
def test_the_core_trains_and_colourises_without_tensorflow_decord_or_torch():
  result = _run(
    _BLOCKER
    + """
import jax, json, os, tempfile, numpy as np
from helpers import tiny_config
from pix2pix_jax import models
from pix2pix_jax.colorize import colorizer
from pix2pix_jax.tools.bench import main as benchmark

# The train benchmark builds the state and runs the jit'd train step; infer runs the generator.
for kind in ("train", "infer"):
  benchmark.main([kind, "--batch-size", "2", "--render-size", "32", "--ngf", "4", "--ndf", "4",
                  "--num-downs", "5", "--steps", "1"])
# The accelerator report, video pipeline and chunked archive (ffmpeg pipe, no decord) included.
with tempfile.TemporaryDirectory() as tmp:
  report = os.path.join(tmp, "report.md")
  benchmark.main(["accelerator-report", "--output", report, "--size", "32", "--ngf", "4",
                  "--ndf", "4", "--num-downs", "5", "--batches", "2", "--dtypes", "float32",
                  "--steps", "1", "--video-seconds", "0.4", "--clip-size", "64x48",
                  "--video-batch", "2", "--archive-clip-size", "64x48", "--archive-seconds", "2",
                  "--archive-workers", "2"])
  text = open(report).read()
  assert "| float32 | 2 |" in text and "| 64x48 | 32 | 2 |" in text, text
  assert "skipped" not in text and "failed" not in text, text

config = tiny_config()
variables = models.make_generator(config).init(jax.random.key(0), np.zeros((1, 32, 32, 1)),
                                               train=False)
colorizer = colorizer.Colorizer.from_config(config, variables, batch_size=2)
photo = np.random.default_rng(0).integers(0, 256, (20, 27, 3), dtype=np.uint8)
(out,) = colorizer.colorize_images([photo])
assert out.shape == (20, 27, 3) and out.dtype == np.uint8
for name, module in sys.modules.items():
  assert name.split(".")[0] not in ("tensorflow", "tensorflow_datasets", "decord", "torch") or (
    module is None
  ), name
print("light core ok")
""",
    local_devices=2,
  )
  assert "light core ok" in result.stdout
  records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
  assert [r["bench"] for r in records][:2] == ["train", "infer"]
  assert all(r["img_per_s"] > 0 for r in records[:2])
  benches = [r["bench"] for r in records][2:]
  assert benches == ["report_environment", "report_video", "report_archive", "report_row"]
