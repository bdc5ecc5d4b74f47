"""Benchmarks of the station (issue 6): `python -m bench [--quick]`. See bench/run.py and docs/benchmarks.md."""
