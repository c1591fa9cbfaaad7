"""pix2pix_jax: Pix2Pix colourisation in JAX/Flax. Importing it changes no global setting."""

__version__ = "0.1.0"
