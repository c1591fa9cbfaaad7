"""XLA flags: the commands' defaults, convolutions kept off YNNPACK, Eigen ones on Intel."""

import dataclasses
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from pix2pix_jax import xla_flags
from pix2pix_jax.models import conv, networks


def test_defaults_are_added_and_a_users_setting_wins():
  flag = xla_flags.DEFAULTS[0]
  name = flag.split("=")[0]
  assert xla_flags.with_defaults("") == flag
  assert xla_flags.with_defaults("--xla_force_host_platform_device_count=2").split() == [
    "--xla_force_host_platform_device_count=2",
    flag,
  ]
  assert xla_flags.with_defaults(f"{name}=false") == f"{name}=false"


@pytest.mark.integration
def test_commands_set_them_and_xla_accepts_them():
  # XLA aborts at backend start-up on a flag it does not know.
  code = (
    "import os, pix2pix_jax, jax; from pix2pix_jax import cli;"
    "print(os.environ.get('XLA_FLAGS', '')); cli.configure();"
    "jax.numpy.ones(1).block_until_ready(); print(os.environ['XLA_FLAGS'])"
  )
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  before, after = out.stdout.split("\n")[:2]
  assert before == "" and after.split() == list(xla_flags.DEFAULTS)


def test_forward_options_compile_and_keep_convolutions_off_ynnpack():
  def conv(x, k):
    return jax.lax.conv_general_dilated(
      x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 8, 8, 32)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((3, 3, 32, 32)), jnp.float32)
  default = jax.jit(conv).lower(x, k).compile()
  options = xla_flags.forward_compiler_options()
  assert options  # the tests run on CPU with no user choice of YNNPACK fusions
  forward = jax.jit(conv, compiler_options=options).lower(x, k).compile()
  assert "__ynn_fusion" in default.as_text()
  assert "__ynn_fusion" not in forward.as_text()
  np.testing.assert_allclose(forward(x, k), default(x, k), rtol=1e-5, atol=1e-4)


def test_the_training_step_uses_eigen_convolutions_on_intel_only(monkeypatch):
  assert xla_flags.train_compiler_options("GenuineIntel") == xla_flags.forward_compiler_options()
  assert xla_flags.train_compiler_options("AuthenticAMD") == {}
  assert xla_flags.train_compiler_options("") == {}
  users = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_REDUCE"
  monkeypatch.setenv("XLA_FLAGS", users)
  assert xla_flags.train_compiler_options("GenuineIntel") == {}  # the user's choice wins


def test_cpu_vendor_is_the_one_linux_reports():
  with open("/proc/cpuinfo") as f:
    vendors = {line.split(":")[1].strip() for line in f if line.startswith("vendor_id")}
  assert vendors == {xla_flags.cpu_vendor()} or (not vendors and xla_flags.cpu_vendor() == "")


@pytest.mark.parametrize("vendor, split", [("GenuineIntel", False), ("AuthenticAMD", True)])
def test_kernel_gradients_are_split_only_with_ynnpack_convolutions(monkeypatch, vendor, split):
  monkeypatch.setattr(xla_flags, "cpu_vendor", lambda: vendor)
  policy = networks.conv_policy(tiny_config())
  default = conv.ConvPolicy()
  assert policy == (default if split else dataclasses.replace(default, kgrad_split_max_batch=1))
