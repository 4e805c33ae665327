"""`tortiectl datastore migrate export|import`: move a cluster between the file and etcd (calicoctl's verbs).

`export` prints every resource of the selected datastore as multi-document YAML (BlockAffinities
included); `import -f FILE` applies such a file to the selected datastore in one transaction. To move a
cluster file into etcd:

    tortiectl --config /etc/tortie/cluster.yaml datastore migrate export > cluster.yaml
    tortiectl --config /etc/tortie/datastore.cfg datastore migrate import -f cluster.yaml
"""

from __future__ import annotations

import argparse
import sys

from ctl.common import EXIT_OK, CtlError, open_store, print_warnings
from proto.resources import dump_yaml, load_resources


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ds = subparsers.add_parser("datastore", parents=[common], help="datastore operations (migration)")
    verbs = ds.add_subparsers(dest="datastore_command", metavar="SUBCOMMAND", required=True)
    migrate = verbs.add_parser("migrate", parents=[common], help="export or import the whole cluster")
    steps = migrate.add_subparsers(dest="migrate_command", metavar="STEP", required=True)
    export = steps.add_parser("export", parents=[common], help="print every resource as YAML")
    export.set_defaults(handler=cmd_export)
    imp = steps.add_parser("import", parents=[common], help="apply an exported file to this datastore")
    imp.add_argument("-f", "--filename", required=True, help="the exported YAML ('-' for stdin)")
    imp.set_defaults(handler=cmd_import)


def cmd_export(args: argparse.Namespace) -> int:
    store = open_store(args)
    model = store.load()
    print_warnings(model.warnings)
    sys.stdout.write(f"# exported from {store.name} at revision {model.revision}\n")
    sys.stdout.write(dump_yaml(model.resources))
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    if args.filename == "-":
        text, source = sys.stdin.read(), "<stdin>"
    else:
        try:
            with open(args.filename) as f:
                text = f.read()
        except OSError as exc:
            raise CtlError(f"cannot read {args.filename}: {exc.strerror}") from None
        source = args.filename
    loaded = load_resources(text, source)
    print_warnings(loaded.warnings)
    store = open_store(args)
    model = store.apply(loaded.resources)
    print(f"Successfully imported {len(loaded.resources)} resource(s) into {store.name} "
          f"(revision {model.revision})")
    return EXIT_OK
