"""tortie-felixd: program this node's pod routes from the route feed and the cluster file."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from runtime.cli import check_config, daemon_parser
from runtime.lean import tls_only_if_needed


def main(argv: Sequence[str] | None = None) -> int:
    p = daemon_parser("tortie-felixd", __doc__ or "", metrics_port=9091)
    p.add_argument("--route-protocol", type=int, default=80, help="kernel route protocol felixd owns (80)")
    p.add_argument("--resync-interval", type=float, default=30.0, help="seconds between full resyncs")
    p.add_argument("--stale-time", type=float, default=120.0,
                   help="seconds routes are kept when the feed from bgpd is down (graceful restart)")
    p.add_argument("--install-poolless", action="store_true",
                   help="also install learned routes outside every IPPool (e.g. from a ToR)")
    args = p.parse_args(argv)
    # no OpenSSL unless the datastore needs TLS: decided before asyncio is imported (runtime/lean.py)
    tls_only_if_needed(args.config)
    if args.check_config:
        return check_config(args, lambda model: model.node(args.node))  # type: ignore[attr-defined]
    import asyncio

    from felixd.daemon import FelixDaemon

    return asyncio.run(FelixDaemon(args).run())


if __name__ == "__main__":
    sys.exit(main())
