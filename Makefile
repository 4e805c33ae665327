# make test: set everything up on a fresh Debian 12 machine (as root) and run every tier.
# make unit: the fast tier, after every change.
.PHONY: test setup lint unit test-unit test-kernel test-interop test-e2e test-vm test-hosts hosts-prep deb demo clean

PYTEST_PAR ?= -n 2 --dist loadfile

test: setup lint hosts-prep test-unit test-kernel test-interop test-e2e test-vm test-hosts

setup:
	@scripts/setup.sh

lint: setup
	.venv/bin/ruff check .

unit test-unit: setup
	@scripts/pytest-tier unit tests/unit $(PYTEST_PAR) -q

test-kernel: setup
	@scripts/pytest-tier kernel tests/kernel $(PYTEST_PAR) -q

test-interop: setup
	@scripts/pytest-tier interop tests/interop $(PYTEST_PAR) -q

test-e2e: setup
	@scripts/pytest-tier e2e tests/e2e -q

test-vm: setup
	@scripts/pytest-tier vm tests/vm -q

# Debian 12 hosts under real systemd (systemd-nspawn), the .deb installed on each, Prometheus.
# make test starts building its host image and .deb in the background first (hosts-prep).
hosts-prep: setup
	@scripts/hosts-prep start

test-hosts: setup
	@TORTIE_HOSTS_DEB="$$(scripts/hosts-prep wait)" scripts/pytest-tier hosts tests/hosts -q

# build/deb/tortie_<version>_<arch>.deb with Debian's tools (dh-virtualenv), lintian-checked
deb: setup
	@scripts/build-deb build/deb

demo: setup
	@PATH="$(CURDIR)/.venv/bin:$$PATH" .venv/bin/python scripts/demo.py

clean:
	rm -rf .venv .deps build *.egg-info .pytest_cache .ruff_cache .hypothesis
