"""Colourising: the pix2pix-colorize command, its job list, the Colorizer and video/."""
