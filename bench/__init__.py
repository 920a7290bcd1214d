"""Benchmarks (`make bench`, `python -m bench`): each figure of ours beside its raw baseline,
measured in the same run on the same machine. Never part of `make test`."""
