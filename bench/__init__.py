"""Benchmarks for mozaiks-bus: ratios against raw redis-py, measured in the same run."""
