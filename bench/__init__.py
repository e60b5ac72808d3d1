"""Benchmarks of bounded against its peers; run with `python -m bench`."""
