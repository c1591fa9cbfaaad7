import os
import subprocess
import sys

from pix2pix_jax import xla_flags


def test_defaults_are_added_and_a_users_setting_wins():
  flag = xla_flags.DEFAULTS[0]
  name = flag.split("=")[0]
  assert xla_flags.with_defaults("") == flag
  assert xla_flags.with_defaults("--xla_force_host_platform_device_count=2").split() == [
    "--xla_force_host_platform_device_count=2",
    flag,
  ]
  assert xla_flags.with_defaults(f"{name}=false") == f"{name}=false"


def test_importing_the_package_sets_them_and_xla_accepts_them():
  # XLA aborts at backend start-up on a flag it does not know.
  code = (
    "import os, pix2pix_jax, jax; jax.numpy.ones(1).block_until_ready();"
    "print(os.environ['XLA_FLAGS'])"
  )
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr
  assert out.stdout.split() == list(xla_flags.DEFAULTS)
