"""Loading config files (``configs/*.py`` with a ``get_config()``) and applying overrides."""

import ast
import importlib.util
import os
from typing import Any

import ml_collections


def load(path: str) -> ml_collections.ConfigDict:
  """Runs `get_config()` of the Python config file at `path`."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: config file not found")
  name = "pix2pix_config_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def load_sibling(this_file: str, name: str) -> ml_collections.ConfigDict:
  """The config in the same folder as `this_file` (lets configs build on each other by path)."""
  return load(os.path.join(os.path.dirname(os.path.abspath(this_file)), name))


def apply_overrides(
  config: ml_collections.ConfigDict, overrides: dict[str, Any]
) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted fields replaced: {"model.ngf": 32}. Unknown fields fail."""
  config = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
      if part not in node:
        raise KeyError(f"unknown config field {dotted!r}")
      node = node[part]
    if leaf not in node:
      raise KeyError(f"unknown config field {dotted!r}")
    node[leaf] = value
  return config


def parse_value(text: str) -> Any:
  """A command-line value as a Python literal where it is one (1, 0.5, True), else a string."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
