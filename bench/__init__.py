"""Benchmarks: ``python -m bench.steps`` measures AOS steps/s against a raw Celery baseline."""
