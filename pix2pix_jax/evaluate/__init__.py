"""Evaluation: the pix2pix-evaluate command, metrics over batches and baselines, galleries."""
