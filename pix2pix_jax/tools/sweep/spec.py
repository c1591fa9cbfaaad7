"""Sweep definitions: a sweep file's `get_sweep()` checked and expanded into runs, each with
its resolved config and workdir (the format: docs/sweeps.md)."""

import dataclasses
import importlib.util
import itertools
import math
import os
import re
from typing import Any

import ml_collections
import numpy as np

from pix2pix_jax import checkpoint, config_lib, errors

DEFAULT_METRIC = "ciede2000"
SWEEP_KEYS = {
  "name",
  "base_config",
  "overrides",
  "grid",
  "random",
  "num_trials",
  "seed",
  "metric",
  "scales",
  "description",
}
DISTRIBUTIONS = ("uniform", "log_uniform", "int", "choice")


class SweepError(errors.UserError, ValueError):
  """The sweep definition is unusable; raised before any run is launched."""


@dataclasses.dataclass
class Run:
  name: str
  params: dict[str, Any]  # the swept values of this run
  overrides: dict[str, Any]  # fixed and swept overrides together
  workdir: str
  config: ml_collections.ConfigDict


@dataclasses.dataclass
class Sweep:
  name: str
  path: str
  base_config: str
  metric: str
  swept: list[str]
  runs: list[Run]
  directory: str
  description: str = ""


def read_definition(path: str) -> dict[str, Any]:
  """`get_sweep()` of the sweep file at `path`."""
  if not os.path.isfile(path):
    raise SweepError(f"{path}: sweep file not found")
  spec = importlib.util.spec_from_file_location("pix2pix_sweep_definition", path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as e:
    raise SweepError(f"{path}: line {e.lineno}: {e.msg}") from e
  if not hasattr(module, "get_sweep"):
    raise SweepError(f"{path}: defines no get_sweep()")
  definition = module.get_sweep()
  if not isinstance(definition, dict):
    raise SweepError(f"{path}: get_sweep() must return a dict, got {type(definition).__name__}")
  return definition


def resolve_path(relative: str, sweep_path: str) -> str:
  """`relative` taken from the sweep file's folder (an absolute path stays as it is)."""
  folder = os.path.dirname(os.path.abspath(sweep_path))
  candidate = os.path.abspath(os.path.join(folder, os.path.expanduser(relative)))
  if not os.path.isfile(candidate):
    raise SweepError(f"{sweep_path}: base_config {relative!r} not found ({candidate})")
  return candidate


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
  """The Cartesian product of the grid, in the order written (last field fastest)."""
  for field, values in grid.items():
    if not isinstance(values, (list, tuple)) or not values:
      raise SweepError(f"grid[{field!r}] must be a non-empty list of values")
  fields = list(grid)
  return [dict(zip(fields, combo, strict=True)) for combo in itertools.product(*grid.values())]


def sample(field: str, spec: Any, rng: np.random.Generator) -> Any:
  """One draw from a random-search distribution spec (docs/sweeps.md)."""
  if isinstance(spec, (list, tuple)):
    spec = {"choice": spec}
  if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
    raise SweepError(f"random[{field!r}]={spec!r} is not one of {{{'|'.join(DISTRIBUTIONS)}: ...}}")
  ((kind, args),) = spec.items()
  if kind == "choice":
    return args[int(rng.integers(len(args)))]
  lo, hi = args
  if kind == "uniform":
    return float(rng.uniform(lo, hi))
  if kind == "log_uniform":
    if lo <= 0 or hi <= 0:
      raise SweepError(f"random[{field!r}]: log_uniform bounds must be positive, got {args}")
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
  return int(rng.integers(lo, hi + 1))


def random_points(random: dict[str, Any], num_trials: int, seed: int) -> list[dict[str, Any]]:
  rng = np.random.default_rng(seed)
  return [{f: sample(f, spec, rng) for f, spec in random.items()} for _ in range(num_trials)]


def _format_value(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def run_name(params: dict[str, Any], trial: int | None = None) -> str:
  """A folder name from the swept values: "gan=hinge,l1_weight=10" ("base" if none)."""
  leaves = [f.split(".")[-1] for f in params]
  keys = [f if leaves.count(f.split(".")[-1]) > 1 else f.split(".")[-1] for f in params]
  parts = [f"{k}={_format_value(v)}" for k, v in zip(keys, params.values(), strict=True)]
  if trial is not None:
    parts.insert(0, f"trial{trial:02d}")
  return re.sub(r"[^\w.,=+-]", "_", ",".join(parts)) or "base"


def load_sweep(
  path: str,
  *,
  root: str = "runs",
  scale: str | None = None,
  extra_overrides: dict[str, str] | None = None,
) -> Sweep:
  """Reads and checks a sweep definition: every run's config is built and validated.

  extra_overrides: command-line `--config.field=text` for every run, parsed by the type of the
  base config's field (as pix2pix-train parses them)."""
  definition = read_definition(path)
  if scale:
    scales = definition.get("scales") or {}
    if scale not in scales:
      raise SweepError(f"{path}: no scale {scale!r} (has: {', '.join(scales) or 'none'})")
    definition = {**definition, **scales[scale]}
  unknown = set(definition) - SWEEP_KEYS
  if unknown:
    raise SweepError(f"{path}: unknown sweep keys {sorted(unknown)} (known: {sorted(SWEEP_KEYS)})")
  if "base_config" not in definition:
    raise SweepError(f"{path}: get_sweep() needs a 'base_config'")
  name = definition.get("name") or os.path.splitext(os.path.basename(path))[0]
  if scale:
    name = f"{name}-{scale}"
  base_path = resolve_path(definition["base_config"], path)
  base = config_lib.load(base_path)
  try:
    extra = {f: config_lib.parse_override(base, f, v) for f, v in (extra_overrides or {}).items()}
  except config_lib.ConfigError as e:
    raise SweepError(f"{path}: {e}") from e
  fixed = {**(definition.get("overrides") or {}), **extra}
  grid = definition.get("grid") or {}
  random = definition.get("random") or {}
  points = grid_points(grid) if grid else [{}]
  trials = None
  if random:
    num_trials = int(definition.get("num_trials", 0))
    if num_trials <= 0:
      raise SweepError(f"{path}: 'random' needs a positive 'num_trials'")
    draws = random_points(random, num_trials, int(definition.get("seed", 0)))
    points = [{**p, **d} for p in points for d in draws]
    trials = [i % num_trials for i in range(len(points))]
  directory = os.path.abspath(os.path.join(root, name))
  runs = []
  for i, params in enumerate(points):
    rname = run_name(params, None if trials is None else trials[i])
    overrides = {**fixed, **params}
    try:
      config = config_lib.apply_overrides(base, overrides)
      config_lib.validate(config)
    except (KeyError, TypeError, ValueError) as e:
      message = e.args[0] if isinstance(e, KeyError) and e.args else e
      raise SweepError(f"{path}: run {rname}: {message}") from e
    runs.append(Run(rname, params, overrides, os.path.join(directory, rname), config))
  names = [r.name for r in runs]
  if len(set(names)) != len(names):
    raise SweepError(f"{path}: two runs share a name: {names}")
  return Sweep(
    name=name,
    path=os.path.abspath(path),
    base_config=base_path,
    metric=definition.get("metric", DEFAULT_METRIC),
    swept=list(grid) + [f for f in random if f not in grid],
    runs=runs,
    directory=directory,
    description=definition.get("description", ""),
  )


def is_done(run: Run) -> bool:
  """Finished: a DONE marker, or a checkpoint at num_train_steps (when that is fixed)."""
  if os.path.exists(os.path.join(run.workdir, "DONE")):
    return True
  steps = run.config.num_train_steps
  return steps > 0 and (checkpoint.latest_step(run.workdir) or 0) >= steps
