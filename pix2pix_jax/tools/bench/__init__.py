"""Benchmarks: the pix2pix-benchmark command and its measurements."""
