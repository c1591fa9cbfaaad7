"""pix2pix_jax: Pix2Pix colourisation in JAX/Flax."""

from pix2pix_jax import xla_flags

xla_flags.apply_defaults()
