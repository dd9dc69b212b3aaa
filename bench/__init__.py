"""Benchmarks and the fault campaign (`make bench`, `make chaos`). Measurements, not tests."""
