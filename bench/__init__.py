"""Benchmarks against named peers (not tests). The scripts run as `python bench/NAME.py`; the
modules beside them (birdctl, kernel_routes, procstat, netlab, results) are their shared parts."""
