#!/usr/bin/env bash
# Everything the tests and the demo need on a fresh Debian 12 machine, idempotent:
# apt packages (when root), BIRD 1.6 extracted beside bird2, and the project's venv.
set -euo pipefail
cd "$(dirname "$0")/.."
system_setup=0

APT_PACKAGES=(
  python3 python3-venv python3-pip
  iproute2 iputils-ping nftables tcpdump tshark curl procps
  bird2 gobgpd frr
  systemd
  qemu-system-x86 busybox-static kmod cpio
  etcd-server etcd-client openssl
  # make deb (Debian's packaging tools) and the hosts tier (real systemd hosts, Prometheus)
  dpkg-dev debhelper dh-virtualenv python3.11-dev libyaml-dev build-essential lintian
  systemd-container mmdebstrap util-linux prometheus
  chromium  # headless: tests/e2e/test_report.py renders the demo's report
)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Daemons are started by the tests in their own namespaces, never by the package scripts.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
  fi
  system_setup=1
  # The kernel's neighbour (ARP/NDP) table is one table for all namespaces, with machine-wide limits
  # (1,024 entries by default): the tiers' labs, meshes and reflector benchmarks running side by side
  # need more, and a full table drops packets in every namespace (lost pings, stalled sessions).
  # Raised as container hosts raise it; never lowered.
  for v in 4 6; do
    for t in "gc_thresh1 1024" "gc_thresh2 8192" "gc_thresh3 16384"; do
      set -- $t
      key=net.ipv$v.neigh.default.$1
      cur=$(sysctl -n "$key" 2>/dev/null || echo 0)
      if [ "$cur" -lt "$2" ]; then sysctl -qw "$key=$2" || true; fi
    done
  done
  # BIRD 1.6 (Calico's line) conflicts with bird2 as a package: run it from an extraction.
  if [ ! -x .deps/bird16/usr/sbin/bird ]; then
    mkdir -p .deps/bird16 && (cd .deps && rm -f bird_*.deb && apt-get download bird >/dev/null 2>&1 \
      && dpkg -x bird_*.deb bird16 && rm -f bird_*.deb) || echo "setup: BIRD 1.6 not available (interop with it will skip)"
  fi
else
  echo "setup: not root or no apt-get: skipping system packages (tiers that need them will skip)"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev,fuzz]'
  touch .venv/.installed
fi
# This machine now has everything every tier needs: from here on a skip as root is a failure unless
# tests/skip-allowlist.yaml allows it (tests/skip_policy.py).
if [ "$system_setup" = 1 ]; then
  touch .venv/.tortie-system-setup
fi
