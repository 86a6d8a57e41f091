"""Benchmarks run by hand or by make targets, not by the test suite."""
