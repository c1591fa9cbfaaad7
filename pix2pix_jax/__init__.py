"""pix2pix_jax: Pix2Pix colourisation in JAX/Flax."""
