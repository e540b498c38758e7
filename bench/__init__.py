"""`make bench` (run.py) and `make bench-compare` (compare.py)."""
