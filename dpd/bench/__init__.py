"""Benchmarking dpd against plain SB3 baselines: a grid of runs, statistics, tables and plots."""
