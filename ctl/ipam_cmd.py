"""`tortiectl ipam`: block allocation (`assign-block`) and the state of the pools (`show`)."""

from __future__ import annotations

import argparse

from ctl.common import EXIT_OK, CtlError, open_store, print_table
from datastore.ipam import IpamError, assign_block, pool_usage, release_blocks


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ipam = subparsers.add_parser("ipam", parents=[common], help="IP address management: pod blocks")
    verbs = ipam.add_subparsers(dest="ipam_command", metavar="SUBCOMMAND", required=True)

    assign = verbs.add_parser("assign-block", parents=[common],
                              help="affine the lowest free block of a pool to a node and print it")
    assign.add_argument("--node", required=True, help="node name")
    assign.add_argument("--pool", help="IPPool name (default: the first enabled pool selecting the node)")
    assign.set_defaults(handler=cmd_assign_block)

    release = verbs.add_parser("release", parents=[common],
                               help="free blocks: the ones given, or every block of a node")
    release.add_argument("--block", action="append", default=[], metavar="CIDR", help="a block (repeatable)")
    release.add_argument("--node", help="free every block of this node")
    release.set_defaults(handler=cmd_release)

    show = verbs.add_parser("show", parents=[common], help="pools, blocks per node and free blocks")
    show.set_defaults(handler=cmd_show)


def cmd_assign_block(args: argparse.Namespace) -> int:
    try:
        block = assign_block(open_store(args), args.node, args.pool)
    except IpamError as exc:
        raise CtlError(str(exc)) from None
    print(block.cidr)
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    if not args.block and not args.node:
        raise CtlError("ipam release needs --block CIDR or --node NAME")
    try:
        freed = release_blocks(open_store(args), blocks=args.block, node=args.node)
    except IpamError as exc:
        raise CtlError(str(exc)) from None
    for block in freed:
        print(f"released {block.cidr} (node {block.node})")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    model = open_store(args).load()
    print_table(["POOL", "CIDR", "BLOCKSIZE", "BLOCKS", "USED", "FREE"],
                [[u.pool.name, u.pool.cidr, u.pool.block_size, u.total, u.used, u.free]
                 for u in pool_usage(model)])
    print()
    rows = []
    for block in sorted(model.blocks, key=lambda b: (b.node, b.cidr.version, b.cidr)):
        pool = model.pool_for(block.cidr)
        rows.append([block.node, block.cidr, pool.name if pool else "-", block.state])
    print_table(["NODE", "BLOCK", "POOL", "STATE"], rows)
    return EXIT_OK
