"""Plumbing both daemons share: logging, sd_notify, the control socket, the metrics/health endpoint."""
