"""tortie-bgpd: share this node's pod blocks over BGP and learn everyone else's."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.cli import check_config, daemon_parser
from runtime.lean import tls_only_if_needed
from startup.options import add_arguments as add_join_arguments


def main(argv: Sequence[str] | None = None) -> int:
    p = daemon_parser("tortie-bgpd", __doc__ or "", metrics_port=9092)
    p.add_argument("--listen-address", action="append", default=[],
                   help="address to listen on for BGP (repeatable; default: this Node's addresses)")
    p.add_argument("--no-peer-metrics", action="store_true",
                   help="export the per-peer metrics summed over peers, without the peer label (big reflectors)")
    add_join_arguments(p)
    p.add_argument("--secrets-dir", default=None,
                   help="where BGPPeer password.secretKeyRef secrets are read: DIR/<secret name>/<key> "
                        "(default: /etc/tortie/secrets)")
    args = p.parse_args(argv)
    tls_only_if_needed(args.config)
    from bgpd.topology import build
    from proto.resources import DEFAULT_SECRETS_DIR

    if args.check_config:
        secrets = Path(getattr(args, "secrets_dir", None) or DEFAULT_SECRETS_DIR)  # passwords are checked too
        return check_config(args, lambda model: build(model, args.node, secrets))  # type: ignore[arg-type]
    import asyncio

    from bgpd.daemon import BgpDaemon
    from runtime.limits import raise_open_files_limit

    raise_open_files_limit()  # a socket per peer, two BFD sockets per listen address

    return asyncio.run(BgpDaemon(args).run())



if __name__ == "__main__":
    sys.exit(main())
