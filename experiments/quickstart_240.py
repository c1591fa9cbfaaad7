"""configs/quickstart.py cut to 40 + 20 epochs of the 17 samples at batch 4 (240 steps), with
an evaluation and checkpoint every 60 steps: the base of every quickstart-scale sweep here, a
few minutes a run on a CPU."""

from pix2pix_jax import config_lib


def get_config():
  config = config_lib.load_sibling(__file__, "../configs/quickstart.py")
  config.num_epochs = 40
  config.num_epochs_decay = 20
  config.eval_every_steps = 60
  config.checkpoint_every_steps = 60
  config.sample_every_steps = 60
  config.log_every_steps = 20
  return config
