"""Benchmarks: bench_engine.py (Potluck vs local transformers), bench_network.py (link delay, fail-over)."""
