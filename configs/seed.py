"""The original experiment: 2000 Places365 images at 256x256, RGB output from a
0.3R+0.59G+0.11B grayscale input, batch size 1, L1 weight 100, Adam 2e-4 / 0.5,
sample grids (grayscale / generated / real) every 5 epochs."""

from pix2pix_jax import config_lib


def get_config():
  config = config_lib.load_sibling(__file__, "default.py")
  config.color_space = "rgb"
  config.data.max_train_examples = 2000
  config.batch_size = 1
  steps_per_epoch = 2000  # 2000 images at batch size 1
  config.sample_every_steps = 5 * steps_per_epoch
  config.eval_every_steps = 5 * steps_per_epoch
  config.checkpoint_every_steps = steps_per_epoch
  config.keep_checkpoint_every_steps = 25 * steps_per_epoch
  return config
