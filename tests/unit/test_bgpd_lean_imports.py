"""What a tortie-bgpd on the file datastore does not load: the joining (calico-node's start-up: address
autodetection, Node registration, block claims) runs only for `--register always` or an etcd."""

from __future__ import annotations

import argparse
import subprocess
import sys

from startup.options import join_wanted


def test_the_daemon_module_does_not_import_the_joining() -> None:
    code = "import sys, bgpd.daemon; print('startup.join' in sys.modules, 'startup.autodetect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_when_joining_is_wanted() -> None:
    args = argparse.Namespace(register="auto")
    assert not join_wanted(args, "file") and join_wanted(args, "etcdv3")
    assert join_wanted(argparse.Namespace(register="always"), "file")
    assert not join_wanted(argparse.Namespace(register="never"), "etcdv3")
