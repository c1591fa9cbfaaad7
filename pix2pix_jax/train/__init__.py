"""Training: pix2pix-train, the loop, the update step, sample grids, the workdir lock."""
