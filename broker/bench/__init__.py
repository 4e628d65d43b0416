"""Micro-benchmarks of the pure core, run by `broker bench NAME` (never part of pass/fail tests)."""
