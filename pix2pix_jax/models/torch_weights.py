"""Weights of the reference PyTorch Pix2Pix code as flax variables of our networks, and back:
its `UnetGenerator` (unet_128 / unet_256) and n-layer `NLayerDiscriminator` map 1:1 (a
DataParallel `module.` prefix is removed, `num_batches_tracked` ignored). torch is needed only by
`load_torch_file`.
"""

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pix2pix_jax import errors
from pix2pix_jax.models import networks


class WeightsError(errors.UserError, ValueError):
  """A PyTorch checkpoint that cannot be read or does not match the expected networks."""


# (torch module prefix, flax module name, kind); kind says how the tensors of that module map.
_Layout = list[tuple[str, str, str]]
_CONV, _CONV_BIAS, _UPCONV, _UPCONV_BIAS, _BATCHNORM = "conv", "conv+b", "up", "up+b", "bn"
_IGNORED_SUFFIX = ".num_batches_tracked"


def _generator_layout(num_downs: int) -> _Layout:
  """The reference U-Net is a chain of skip blocks, each an `nn.Sequential` called `model` whose
  submodule sits at index 1 (outermost) or 3 (middle blocks): the second level's down
  convolution is `model.model.1.model.1.weight`."""
  if num_downs < 5:
    raise ValueError(f"num_downs must be >= 5, got {num_downs}")
  last = num_downs - 1
  layout = [("model.model.0", "down0", _CONV), ("model.model.3", "up0", _UPCONV_BIAS)]
  seq = "model.model.1.model"  # the nn.Sequential of level 1
  for level in range(1, num_downs):
    layout.append((f"{seq}.1", f"down{level}", _CONV))
    if level < last:
      layout += [
        (f"{seq}.2", f"down_norm{level}", _BATCHNORM),
        (f"{seq}.5", f"up{level}", _UPCONV),
        (f"{seq}.6", f"up_norm{level}", _BATCHNORM),
      ]
      seq = f"{seq}.3.model"
    else:
      layout += [(f"{seq}.3", f"up{level}", _UPCONV), (f"{seq}.4", f"up_norm{level}", _BATCHNORM)]
  return layout


def _discriminator_layout(n_layers: int) -> _Layout:
  if n_layers < 1:
    raise ValueError(f"n_layers must be >= 1, got {n_layers}")
  layout = [("model.0", "conv0", _CONV_BIAS)]
  for n in range(1, n_layers + 1):
    layout += [
      (f"model.{3 * n - 1}", f"conv{n}", _CONV),
      (f"model.{3 * n}", f"norm{n}", _BATCHNORM),
    ]
  layout.append((f"model.{3 * n_layers + 2}", f"conv{n_layers + 1}", _CONV_BIAS))
  return layout


def _torch_keys(prefix: str, kind: str) -> dict[str, tuple[str, str]]:
  """torch key -> (collection, flax leaf name) for one module."""
  if kind == _BATCHNORM:
    return {
      f"{prefix}.weight": ("params", "scale"),
      f"{prefix}.bias": ("params", "bias"),
      f"{prefix}.running_mean": ("batch_stats", "mean"),
      f"{prefix}.running_var": ("batch_stats", "var"),
    }
  keys = {f"{prefix}.weight": ("params", "kernel")}
  if kind in (_CONV_BIAS, _UPCONV_BIAS):
    keys[f"{prefix}.bias"] = ("params", "bias")
  return keys


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch.Tensor; torch itself is not needed to read it
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    value = value.numpy()
  return np.asarray(value)


def _strip_data_parallel(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  if state_dict and all(k.startswith("module.") for k in state_dict):
    return {k[len("module.") :]: v for k, v in state_dict.items()}
  return dict(state_dict)


def _from_torch(state_dict: Mapping[str, Any], layout: _Layout, what: str) -> dict:
  tensors = {
    k: v for k, v in _strip_data_parallel(state_dict).items() if not k.endswith(_IGNORED_SUFFIX)
  }
  variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
  used = set()
  missing = []
  for prefix, name, kind in layout:
    for key, (collection, leaf) in _torch_keys(prefix, kind).items():
      if key not in tensors:
        missing.append(key)
        continue
      used.add(key)
      value = _to_numpy(tensors[key]).astype(np.float32)
      if leaf == "kernel":
        if value.ndim != 4:
          raise WeightsError(f"{what}: {key} has shape {value.shape}, expected a 4-d weight")
        # Conv2d (Cout, Cin, kh, kw), ConvTranspose2d (Cin, Cout, kh, kw) -> (kh, kw, Cin, Cout).
        value = (
          value.transpose(2, 3, 1, 0) if kind.startswith("conv") else value.transpose(2, 3, 0, 1)
        )
      variables[collection].setdefault(name, {})[leaf] = jnp.asarray(value)
  unexpected = sorted(set(tensors) - used)
  if unexpected or missing:
    problems = []
    if unexpected:
      problems.append(f"unexpected keys {unexpected[:8]}" + (" ..." if len(unexpected) > 8 else ""))
    if missing:
      problems.append(f"missing keys {missing[:8]}" + (" ..." if len(missing) > 8 else ""))
    raise WeightsError(f"{what}: not the expected state_dict layout: " + "; ".join(problems))
  return variables


def _check_shapes(variables: dict, model: Any, in_channels: int, size: int, what: str) -> None:
  """Raises ValueError naming every leaf whose shape differs from what `model` builds."""
  x = jax.ShapeDtypeStruct((1, size, size, in_channels), jnp.float32)
  expected = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  got = jax.tree_util.tree_flatten_with_path(variables)[0]
  want = dict(jax.tree_util.tree_flatten_with_path(dict(expected))[0])
  bad = [
    f"{jax.tree_util.keystr(path)}: {tuple(value.shape)} vs {tuple(want[path].shape)}"
    for path, value in got
    if path in want and value.shape != want[path].shape
  ]
  if bad:
    raise WeightsError(f"{what}: inconsistent tensor shapes (got vs expected): " + "; ".join(bad))


def generator_from_torch(state_dict: Mapping[str, Any], *, num_downs: int) -> dict:
  """Variables {"params", "batch_stats"} of `networks.UNetGenerator(norm="batch")` from a
  reference `UnetGenerator` state_dict (torch tensors or numpy arrays).

  ngf and the channel counts are read from the tensors; use `generator_shape` to see them.
  """
  what = f"generator state_dict (num_downs={num_downs})"
  variables = _from_torch(state_dict, _generator_layout(num_downs), what)
  in_channels, ngf, out_channels = generator_shape(variables)
  model = networks.UNetGenerator(out_channels, num_downs=num_downs, ngf=ngf, norm="batch")
  _check_shapes(variables, model, in_channels, 2**num_downs, what)
  return variables


def generator_shape(variables: dict) -> tuple[int, int, int]:
  """(input channels, ngf, output channels) of generator variables."""
  params = variables["params"]
  _, _, in_channels, ngf = params["down0"]["kernel"].shape
  return int(in_channels), int(ngf), int(params["up0"]["kernel"].shape[-1])


def discriminator_from_torch(state_dict: Mapping[str, Any], *, n_layers: int = 3) -> dict:
  """Variables of `networks.PatchDiscriminator(norm="batch")` from a reference
  `NLayerDiscriminator` state_dict."""
  what = f"discriminator state_dict (n_layers={n_layers})"
  variables = _from_torch(state_dict, _discriminator_layout(n_layers), what)
  _, _, in_channels, ndf = variables["params"]["conv0"]["kernel"].shape
  model = networks.PatchDiscriminator(ndf=int(ndf), n_layers=n_layers, norm="batch")
  _check_shapes(variables, model, int(in_channels), 2**n_layers * 4, what)
  return variables


def _to_torch(variables: dict, layout: _Layout) -> dict[str, np.ndarray]:
  state_dict = {}
  for prefix, name, kind in layout:
    for key, (collection, leaf) in _torch_keys(prefix, kind).items():
      try:
        value = np.asarray(variables[collection][name][leaf], np.float32)
      except KeyError as e:
        raise ValueError(f"variables have no {collection}/{name}/{leaf}") from e
      if leaf == "kernel":
        value = (
          value.transpose(3, 2, 0, 1) if kind.startswith("conv") else value.transpose(2, 3, 0, 1)
        )
      state_dict[key] = np.array(value, order="C")  # a writable copy, as torch.from_numpy wants
    if kind == _BATCHNORM:
      state_dict[f"{prefix}{_IGNORED_SUFFIX}"] = np.zeros((), np.int64)
  return state_dict


def generator_to_torch(variables: dict, *, num_downs: int) -> dict[str, np.ndarray]:
  """A reference `UnetGenerator` state_dict (numpy arrays; `torch.from_numpy` each) from
  `networks.UNetGenerator(norm="batch")` variables. `num_batches_tracked` is written as 0."""
  return _to_torch(variables, _generator_layout(num_downs))


def discriminator_to_torch(variables: dict, *, n_layers: int = 3) -> dict[str, np.ndarray]:
  """A reference `NLayerDiscriminator` state_dict from `networks.PatchDiscriminator` variables."""
  return _to_torch(variables, _discriminator_layout(n_layers))


def load_torch_file(path: str) -> dict[str, np.ndarray]:
  """The state_dict saved with `torch.save` at `path`, as numpy arrays (needs PyTorch)."""
  try:
    import torch  # optional (the "parity" extra)
  except ImportError as e:
    raise WeightsError(
      f"{path}: reading a PyTorch checkpoint needs torch (pip install torch)"
    ) from e
  if not os.path.isfile(path):
    raise WeightsError(f"{path}: no such file")
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises several types for pickles it refuses or cannot read
    raise WeightsError(
      f"{path}: not a loadable PyTorch state_dict ({type(e).__name__}: {e})"
    ) from e
  if not isinstance(loaded, Mapping) or not all(
    isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
  ):
    hint = (
      f" (top-level keys: {sorted(map(str, loaded))[:8]})" if isinstance(loaded, Mapping) else ""
    )
    raise WeightsError(
      f"{path}: expected a state_dict (names -> tensors), got {type(loaded).__name__}{hint}"
    )
  return {k: _to_numpy(v) for k, v in loaded.items()}
