"""Pix2Pix paper settings (unet_256 + 70x70 PatchGAN) on places365_small at 256x256.

Every other config imports this one and overrides a few fields. Any field can be
overridden on the command line: ``--config.model.ngf=32``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # "rgb": input 0.3R+0.59G+0.11B, output RGB. "lab": input L/50-1, output ab/110.
  config.color_space = "lab"

  config.data = ml_collections.ConfigDict()
  config.data.source = "tfds"  # "tfds" | "folder" | "samples"
  config.data.name = "places365_small"  # tfds dataset name
  config.data.data_dir = ml_collections.config_dict.placeholder(str)  # tfds data_dir
  config.data.folder = ml_collections.config_dict.placeholder(str)  # for source="folder"
  config.data.train_split = "train"
  config.data.eval_split = "validation"
  # For folders: the fraction of files (chosen by hash of the path) held out for eval.
  config.data.eval_fraction = 0.1
  config.data.max_train_examples = -1  # -1: all
  config.data.max_eval_examples = 256
  config.data.load_size = 286  # resize to this, then random crop
  config.data.crop_size = 256
  config.data.flip = True
  config.data.shuffle_buffer = 10_000

  config.model = ml_collections.ConfigDict()
  config.model.num_downs = 8  # 8: unet_256, 7: unet_128
  config.model.ngf = 64
  config.model.norm = "batch"  # "batch" | "instance" | "none"
  config.model.use_dropout = True
  # How the 4x4 stride-2 convolutions and transposed convolutions are computed: "auto" = tuned
  # XLA:CPU formulations on CPU, XLA's own convolutions on GPU/TPU; "plain" | "cpu_tuned" force
  # one of them. Same function and parameters (see models/conv.py).
  config.model.conv = "auto"
  config.model.discriminator = "patch"  # "patch" | "pixel"
  config.model.ndf = 64
  config.model.n_layers_d = 3
  config.model.dtype = "float32"  # compute dtype: "float32" | "bfloat16"
  # Colour hints (pix2pix_jax/hints/): the generator also takes the hint chroma (ab) and a hint
  # mask; training simulates hints from the real image. False: the plain Pix2Pix generator.
  config.model.hints = False
  # With hints: how much a difference in lightness counts against a hint when the generator
  # spreads its hints to every pixel (hints.device.propagate; 0: the plain nearest hint).
  config.model.hint_luminance_weight = 2.5

  # Simulated hints (only with model.hints): per image, n points with P(n = k) = p (1 - p)^k up to
  # max_points (a fraction p of the images get none); each a square patch of odd side 1 ..
  # max_patch revealing its mean true ab.
  config.hint_sim = ml_collections.ConfigDict()
  config.hint_sim.points_p = 0.125
  config.hint_sim.max_points = 128
  config.hint_sim.max_patch = 9
  # The probability that an image's colours are first turned by a random hue angle (L kept), so
  # that the generator learns to carry colour from its hints rather than to recall it.
  config.hint_sim.hue_rotation_p = 0.0
  # The probability that an image's chroma is then scaled by a random factor in [0, 1], so that
  # dull hints give dull colours rather than the colours of the photos it learnt from.
  config.hint_sim.chroma_scale_p = 0.0

  config.loss = ml_collections.ConfigDict()
  config.loss.gan = "vanilla"  # "vanilla" | "lsgan" | "hinge"
  config.loss.l1_weight = 100.0

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 2e-4
  config.optim.b1 = 0.5
  config.optim.b2 = 0.999

  config.batch_size = 1  # global, over all devices and processes
  # Constant learning rate for num_epochs, then linear decay to 0 over num_epochs_decay.
  config.num_epochs = 100
  config.num_epochs_decay = 100
  config.num_train_steps = -1  # -1: derived from the epochs and the dataset size

  config.log_every_steps = 100
  config.sample_every_steps = 5000
  config.num_sample_images = 4
  config.eval_every_steps = 5000
  # The checkpoint with the best value of this eval metric is kept beside the latest.
  config.best_metric = "ciede2000"
  config.checkpoint_every_steps = 5000
  config.keep_checkpoint_every_steps = 50_000  # kept for good, beside the latest
  # N > 0: a jax profiler trace of N steps after 3 warm-up steps, into the workdir (TensorBoard's
  # Profile tab). 0: off.
  config.profile_steps = 0
  return config
