"""Commands beside training and colourising: benchmarks, sweeps, PyTorch weight import."""
