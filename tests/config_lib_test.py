"""Config overrides: typed by the field, strict about names (as pix2pix-train's are)."""

import os

import pytest
from helpers import REPO, tiny_overrides, write_sweep

from pix2pix_jax import config_lib
from pix2pix_jax.tools.sweep import spec

DEFAULT = os.path.join(REPO, "configs", "default.py")


def test_overrides_replace_fields_in_a_copy():
  config = config_lib.load(DEFAULT)
  new = config_lib.apply_overrides(config, {"model.ngf": 8, "data.folder": "photos"})
  assert (new.model.ngf, new.data.folder) == (8, "photos")
  assert (config.model.ngf, config.data.folder) == (64, None)
  assert config_lib.apply_overrides(config, {"optim.b1": 1}).optim.b1 == 1.0  # int -> float
  new.model.extra = 1  # an unlocked copy, as before


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"data.foldr": "x"}, "unknown config field 'data.foldr' (did you mean 'data.folder'?)"),
    ({"dat.folder": "x"}, "unknown config field 'dat.folder' (did you mean 'data'?)"),
    ({"model.ngf.x": 1}, "unknown config field 'model.ngf.x'"),
    ({"data.folder": 123}, "config.data.folder=123: the field takes str values"),
    ({"batch_size": "x"}, "config.batch_size='x': the field takes int values"),
  ],
)
def test_unknown_fields_and_wrong_types_fail_naming_the_field(overrides, message):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.apply_overrides(config_lib.load(DEFAULT), overrides)
  assert str(e.value) == message


@pytest.mark.parametrize(
  "field, text, value",
  [
    ("data.folder", "123", "123"),
    ("data.name", "places365", "places365"),
    ("batch_size", "8", 8),
    ("optim.b1", "1", 1.0),
    ("data.flip", "false", False),
  ],
)
def test_command_line_text_is_parsed_by_the_field_type(field, text, value):
  parsed = config_lib.parse_override(config_lib.load(DEFAULT), field, text)
  assert parsed == value and type(parsed) is type(value)


def test_command_line_text_errors_name_the_field():
  config = config_lib.load(DEFAULT)
  with pytest.raises(config_lib.ConfigError, match=r"^--config.batch_size=x: .*'x'"):
    config_lib.parse_override(config, "batch_size", "x")
  with pytest.raises(config_lib.ConfigError, match=r"did you mean 'data.name'\?"):
    config_lib.parse_override(config, "data.nme", "x")


def test_sweep_command_line_overrides_are_typed_like_training(tmp_path):
  path = write_sweep(tmp_path / "s.py", {"loss.gan": ["hinge"]}, tiny_overrides())
  extra = {"data.folder": "123", "loss.l1_weight": "5"}
  (run,) = spec.load_sweep(path, root=str(tmp_path / "runs"), extra_overrides=extra).runs
  assert run.config.data.folder == "123" and run.config.loss.l1_weight == 5.0
  with pytest.raises(spec.SweepError, match="--config.batch_size=x"):
    spec.load_sweep(path, extra_overrides={"batch_size": "x"})
