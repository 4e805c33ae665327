"""`make demo`: the Calico routing article's story on this machine, in network namespaces.

Brings the lab up (four hosts running tortie-bgpd and tortie-felixd, three pods, a fabric with the
cloud source/destination check), walks the article's steps printing what it shows, and takes the lab
down again (KEEP=1 leaves it up to explore).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab.cluster import Lab  # noqa: E402
from lab.story import Story  # noqa: E402
from lab.topology import SEED_CLUSTER  # noqa: E402


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root: it creates network namespaces", file=sys.stderr)
        return 1
    keep = os.environ.get("KEEP") == "1"
    lab = Lab(Path(os.environ.get("TORTIE_LAB_DIR", "/run/tortie-lab")))
    print("Building the lab: hosts master, worker-1, worker-2 (10.30.0.0/24, AWS-style src/dst check),")
    print("worker-3 (10.30.1.0/24) behind a gateway that knows only host subnets, pods pod-1..3.")
    t0 = time.monotonic()
    lab.up(SEED_CLUSTER)
    print(f"lab up in {time.monotonic() - t0:.1f} s; every host runs tortie-bgpd and tortie-felixd")
    ok = False
    try:
        results = Story(lab, say=print).run()
        print("\n=== Summary")
        print(f"{'step':45} {'result':8} {'switch time':>11}")
        for r in results:
            status = "skipped" if r.skipped else ("ok" if r.ok else "WRONG")
            took = "" if r.skipped else f"{r.seconds:.1f} s"
            print(f"{r.name:45} {status:8} {took:>11}")
        ok = all(r.ok for r in results)
    finally:
        if keep:
            print(f"\nKEEP=1: the lab stays up (state in {lab.dir}). Try:")
            print("  tortiectl lab exec master -- tortiectl node status")
            print("  tortiectl lab exec worker-1 -- tortiectl routes")
            print("  tortiectl lab exec worker-1 -- ip route")
            print("  tortiectl lab exec pod-1 -- curl -s http://192.168.97.193/")
            print("  tortiectl lab srcdst on|off")
            print("  tortiectl lab exec master -- tortiectl apply -f configs/ippool-direct.yaml")
            print("  tortiectl lab down")
        else:
            lab.down()
            print("\nlab down")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
