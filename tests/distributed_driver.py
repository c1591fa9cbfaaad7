"""Runs a few train steps as one process of a (possibly) multi-process jax program.

Used by distributed_test.py and slurm_test.py: every process feeds its slice of the same
global batches, and process 0 writes the final parameters to --out.
"""

import argparse

import jax

parser = argparse.ArgumentParser()
parser.add_argument("--process-id", type=int, default=0)
parser.add_argument("--num-processes", type=int, default=1)
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--steps", type=int, default=2)
parser.add_argument("--out", required=True)
parser.add_argument(
  "--cluster", action="store_true", help="start up as pix2pix-train does (e.g. from SLURM's env)"
)
args = parser.parse_args()

from pix2pix_jax import distributed  # noqa: E402

if args.cluster:
  distributed.initialize()
elif args.num_processes > 1:
  distributed.initialize(f"localhost:{args.port}", args.num_processes, args.process_id)

import numpy as np  # noqa: E402
import optax  # noqa: E402
from helpers import tiny_config  # noqa: E402

from pix2pix_jax import parallel  # noqa: E402
from pix2pix_jax.train import step as train_step  # noqa: E402

config = tiny_config(batch_size=4)
mesh = parallel.make_mesh()
# Plain SGD: parameter differences stay proportional to gradient differences (Adam's
# normalisation would amplify float noise in near-zero gradients up to the step size).
nets = train_step.make_networks(config, steps_per_epoch=10)
nets = nets.replace(g_tx=optax.sgd(0.1), d_tx=optax.sgd(0.1))
state = jax.jit(
  lambda key: train_step.init_state(nets, key, config.data.crop_size),
  out_shardings=parallel.replicated(mesh),
)(jax.random.key(0))
step = train_step.compile_step(nets, mesh)
local = config.batch_size // jax.process_count()
rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
for i in range(args.steps):
  images = np.random.default_rng(i).integers(0, 256, (config.batch_size, 32, 32, 3), np.uint8)
  state, metrics = step(state, parallel.to_global({"image": images[rows]}, mesh), jax.random.key(1))
params = jax.device_get((state.g_params, state.d_params, state.g_batch_stats))
if jax.process_index() == 0:
  leaves = jax.tree.leaves(params)
  np.savez(args.out, *leaves)
cache = "on" if jax.config.jax_enable_compilation_cache else "off"
print(
  f"process {jax.process_index()} done, {jax.device_count()} devices, cache {cache}", flush=True
)
