"""CPU demo: the embedded sample photos, unet_128 at 128x128 with small widths.

Trains in a few minutes on 2 CPU cores; the same code path as the full configs.
"""

from pix2pix_jax import config_lib


def get_config():
  config = config_lib.load_sibling(__file__, "default.py")
  config.data.source = "samples"
  config.data.load_size = 144
  config.data.crop_size = 128
  config.data.shuffle_buffer = 256
  config.data.max_eval_examples = -1
  config.model.num_downs = 7
  config.model.ngf = 32
  config.model.ndf = 32
  config.batch_size = 4
  # 17 training photos at batch 4: 4 steps an epoch, 1200 steps in all.
  config.num_epochs = 200
  config.num_epochs_decay = 100
  config.log_every_steps = 20
  config.sample_every_steps = 200
  config.num_sample_images = 6
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  config.keep_checkpoint_every_steps = 1000
  return config
