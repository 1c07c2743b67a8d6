"""Benchmark and simulation tools for Switchyard (upstream model simulator, load drivers)."""
