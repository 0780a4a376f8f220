"""Benchmarks: spamkit against the reference tools, side by side in one run."""
