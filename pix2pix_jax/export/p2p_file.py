"""The .p2p model file: a `jax.export`-serialised generator, its weights and its settings, in one
zip archive; reading it needs only jax and numpy. Members, input and output: docs/video.md ("The
.p2p format"). A file that is not a complete .p2p raises `ModelFileError` naming it.
"""

import dataclasses
import io
import json
import zipfile
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from pix2pix_jax import errors, files

FORMAT = "pix2pix_jax.p2p/1"
_METADATA, _PROGRAM, _WEIGHTS = "metadata.json", "generator.jaxexport", "weights.npz"


class ModelFileError(errors.UserError, ValueError):
  """The path is not a readable .p2p model file, or it cannot run here."""


@dataclasses.dataclass(frozen=True)
class ExportedModel:
  """A loaded .p2p file: call `exported.call(variables, x)` on [batch_per_device, r, r, C]."""

  exported: jax_export.Exported
  variables: dict[str, Any]
  metadata: dict[str, Any]

  @property
  def render_size(self) -> int:
    return int(self.metadata["render_size"])

  @property
  def color_space(self) -> str:
    return str(self.metadata["color_space"])

  @property
  def batch_per_device(self) -> int:
    return int(self.metadata["batch_per_device"])

  @property
  def hints(self) -> bool:
    """Whether the generator takes colour hints (files written before hints existed: no)."""
    return bool(self.metadata.get("hints", False))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
  flat = {}
  for key, value in tree.items():
    if "/" in key:
      raise ValueError(f"variable name {key!r} contains '/'")
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}/"))
    else:
      flat[f"{prefix}{key}"] = np.asarray(value)
  return flat


def _unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    *parents, leaf = path.split("/")
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def save(
  path: str,
  exported: jax_export.Exported,
  variables: dict[str, Any],
  metadata: dict[str, Any],
  *,
  overwrite: bool = False,
) -> None:
  """Writes a .p2p file atomically (`files.atomic_output`: never a partial file at `path`)."""
  metadata = {"format": FORMAT, **metadata}
  weights = io.BytesIO()
  np.savez(weights, **_flatten(jax.device_get(variables)))
  with files.atomic_output(path, overwrite=overwrite) as tmp:
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
      archive.writestr(_METADATA, json.dumps(metadata, indent=1, sort_keys=True))
      archive.writestr(_PROGRAM, bytes(exported.serialize()))
      archive.writestr(_WEIGHTS, weights.getvalue())


def load(path: str) -> ExportedModel:
  """Reads and checks a .p2p file; ModelFileError naming `path` if it is not a usable one."""
  try:
    with zipfile.ZipFile(path) as archive:
      metadata = json.loads(archive.read(_METADATA))
      program = archive.read(_PROGRAM)
      weights = archive.read(_WEIGHTS)
  except FileNotFoundError:
    raise ModelFileError(f"{path}: no such file") from None
  except IsADirectoryError:
    raise ModelFileError(f"{path}: is a directory") from None
  except OSError as e:
    raise ModelFileError(f"{path}: cannot read ({files.describe_os_error(e)})") from e
  except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
    raise ModelFileError(f"{path}: not a .p2p model file, or truncated ({e})") from e
  except KeyError as e:
    raise ModelFileError(f"{path}: not a .p2p model file ({e.args[0]})") from e
  except (ValueError, UnicodeDecodeError) as e:
    raise ModelFileError(f"{path}: unreadable metadata ({e})") from e
  if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
    found = metadata.get("format") if isinstance(metadata, dict) else None
    raise ModelFileError(
      f"{path}: format {found!r} is not {FORMAT!r} (exported by another version?)"
    )
  try:
    exported = jax_export.deserialize(bytearray(program))
  except Exception as e:  # the flatbuffer reader raises assorted types on bad bytes
    raise ModelFileError(f"{path}: the generator program cannot be read ({e})") from e
  if metadata.get("hints") and "hint_luminance_weight" not in metadata:
    raise ModelFileError(
      f"{path}: a hint model of the first hint encoding, which this version does not read "
      "(train and export it again)"
    )
  with np.load(io.BytesIO(weights), allow_pickle=False) as npz:
    variables = _unflatten({name: npz[name] for name in npz.files})
  backend = jax.default_backend()  # "gpu" for CUDA and ROCm
  gpu = backend == "gpu" and {"cuda", "rocm"} & set(exported.platforms)
  if backend not in exported.platforms and not gpu:
    raise ModelFileError(
      f"{path}: exported for {', '.join(exported.platforms)}, not for this machine's {backend} "
      "(export again with --platforms)"
    )
  return ExportedModel(exported=exported, variables=variables, metadata=metadata)
