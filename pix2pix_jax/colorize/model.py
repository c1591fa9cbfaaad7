"""A generator ready to colourise: its frozen spec, its variables and its predict function,
loaded from a training workdir or a `.p2p` file (docs/video.md)."""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
from jax.sharding import PartitionSpec as P

from pix2pix_jax import hints, parallel
from pix2pix_jax.export import p2p_file
from pix2pix_jax.models import render

Predict = Callable[[dict[str, Any], jax.Array], jax.Array]  # (variables, model input) -> ab


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the colourising code needs to know of a generator."""

  color_space: str  # "lab" | "rgb"
  render_size: int  # the generator's square input size
  num_downs: int
  hints: bool  # whether the generator takes colour hint channels
  dtype: str  # compute dtype
  batch_size: int  # frames per generator call, a multiple of the device count


@dataclasses.dataclass(frozen=True)
class Model:
  spec: ModelSpec
  variables: dict[str, Any]  # {"params", "batch_stats"}
  predict: Predict


def from_config(
  config: Any,
  variables: dict[str, Any],
  *,
  render_size: int | None = None,
  batch_size: int = 8,
) -> Model:
  """A training config and its generator's variables (e.g. a restored checkpoint)."""
  from pix2pix_jax.models import networks  # noqa: PLC0415 (flax: not needed by exported models)

  size = render.check_render_size(int(render_size or config.data.crop_size), config.model.num_downs)
  spec = ModelSpec(
    color_space=config.color_space,
    render_size=size,
    num_downs=int(config.model.num_downs),
    hints=hints.enabled(config),
    dtype=str(config.model.get("dtype", "float32")),
    batch_size=parallel.device_multiple(batch_size),
  )
  return Model(spec, variables, networks.generator_predict(config))


def from_workdir(
  workdir: str, *, step: int | None = None, render_size: int | None = None, batch_size: int = 8
) -> Model:
  """The generator (only) of a training workdir's checkpoint: the latest, or `step`."""
  from pix2pix_jax import checkpoint  # noqa: PLC0415 (orbax: not needed by exported models)

  config, variables = checkpoint.restore_generator(workdir, step)
  return from_config(config, variables, render_size=render_size, batch_size=batch_size)


def from_exported(
  path: str, *, render_size: int | None = None, batch_size: int | None = None
) -> Model:
  """A `.p2p` file from `pix2pix-export` (jax and numpy only). Its render size and per-device
  batch are fixed by the export; asking for others is a ModelFileError."""
  exported = p2p_file.load(path)
  devices = len(jax.devices())
  fixed = {"render size": (render_size, exported.render_size)}
  fixed["batch size"] = (batch_size, exported.batch_per_device * devices)
  for name, (asked, value) in fixed.items():
    if asked is not None and asked != value:
      raise p2p_file.ModelFileError(
        f"{path}: exported for {name} {value} here, not {asked} (export again to change it)"
      )
  spec = ModelSpec(
    color_space=exported.color_space,
    render_size=exported.render_size,
    num_downs=int(exported.metadata["num_downs"]),
    hints=exported.hints,
    dtype=str(exported.metadata.get("dtype", "float32")),
    batch_size=exported.batch_per_device * devices,
  )
  per_device = jax.shard_map(
    exported.exported.call,
    mesh=parallel.make_mesh(),
    in_specs=(P(), P("data")),
    out_specs=P("data"),
  )
  return Model(spec, exported.variables, per_device)
