"""tortie-bgpd's options for joining the cluster (calico-node's start-up), apart from the joining
itself so that the entry point can build its parser before loading asyncio and the datastores."""

from __future__ import annotations

import argparse
import os

DEFAULT_POLL_INTERVAL = 60.0  # seconds between address checks (calico-node's AUTODETECT_POLL_INTERVAL)


def add_arguments(parser: argparse.ArgumentParser, environ: dict[str, str] | None = None) -> None:
    """bgpd's options for joining, defaulting to calico-node's environment variables."""
    env = os.environ if environ is None else environ
    group = parser.add_argument_group("joining the cluster (as calico-node's start-up)")
    group.add_argument("--register", choices=["auto", "always", "never"], default="auto",
                       help="create and update this host's Node (auto: with the etcd datastore only)")
    group.add_argument("--ip", default=env.get("IP") or None,
                       help="IPv4 address/prefix, 'autodetect' or 'none' ($IP; unset: keep the Node's, "
                            "else autodetect)")
    group.add_argument("--ip-autodetection-method", default=env.get("IP_AUTODETECTION_METHOD") or "first-found",
                       help="first-found, interface=REGEX, skip-interface=REGEX, cidr=CIDR, can-reach=DEST "
                            "($IP_AUTODETECTION_METHOD)")
    group.add_argument("--autodetect-poll-interval", type=float,
                       default=float(env.get("AUTODETECT_POLL_INTERVAL") or DEFAULT_POLL_INTERVAL),
                       help="seconds between address checks ($AUTODETECT_POLL_INTERVAL, 60)")
    group.add_argument("--claim-block", action="store_true",
                       default=env.get("TORTIE_CLAIM_BLOCK", "").lower() in ("1", "true", "yes"),
                       help="claim a block for this Node if it has none ($TORTIE_CLAIM_BLOCK)")
    group.add_argument("--claim-pool", default=env.get("TORTIE_CLAIM_POOL") or None,
                       help="IPPool to claim from (default: the first enabled pool selecting the node)")


def join_wanted(args: argparse.Namespace, datastore_type: str | None) -> bool:
    """Whether this start registers the Node (and claims a block): `--register always`, or `auto` on
    an etcd datastore. Decided here, so that a daemon that does not join never imports the joining."""
    mode = getattr(args, "register", "auto")
    return mode == "always" or (mode == "auto" and datastore_type == "etcdv3")
