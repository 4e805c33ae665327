"""Process limits a daemon sets for itself.

systemd starts services with a soft limit of 1,024 open files (and a much higher hard limit), the
value that keeps programs using select(2) safe. tortie-bgpd uses epoll and poll only, and a route
reflector needs a socket per client plus two BFD sockets per listen address: a thousand clients
would run out. Raising the soft limit up to the hard one is what systemd's documentation asks of
such programs, instead of a higher default for every service.
"""

from __future__ import annotations

import resource


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # the kernel's nr_open default: what "unlimited" can mean for open files
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    except (ValueError, OSError):
        return soft
    return hard
