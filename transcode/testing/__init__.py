"""Helpers for tests, benchmarks and the demo: the synthetic legacy archive, the codec interop matrix."""
