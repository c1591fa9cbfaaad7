"""Sweeps: pix2pix-sweep (spec, local and SLURM launch, report)."""
