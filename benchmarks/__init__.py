"""Benchmarks of happyrobot_async: `python -m benchmarks.<name>` or `python benchmarks/run.py`."""
