"""Developer tools outside training and colourising (benchmarks, sweeps)."""
