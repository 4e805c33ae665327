"""The open-files limit a daemon raises for itself (systemd's services start with a soft 1,024)."""

from __future__ import annotations

import resource
import subprocess
import sys


def test_soft_limit_raised_to_the_hard_one_in_a_process_that_starts_low() -> None:
    code = ("import resource\n"
            "from runtime.limits import raise_open_files_limit\n"
            "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
            "got = raise_open_files_limit()\n"
            "print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    got, now, hard = (int(x) for x in out)
    assert got == now
    if hard != resource.RLIM_INFINITY:
        assert now == hard > 256
    else:
        assert now > 256
