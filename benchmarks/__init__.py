"""Benchmarks of the trainer, run from the repository root (`python -m benchmarks.bench`)."""
