# make test: set everything up on a fresh Debian 12 machine (as root), run every tier (each to its
#            end, even after another failed), print one summary table, fail if any tier failed.
# make unit: the fast tier, after every change.
# make fuzz: every fuzz target for FUZZ_SECONDS each (default 600); make soak-long: the 1-hour soak.
# make chaos: every chaos event on every host, written to docs/reliability.md with its date and commit.
# make interop-table: one full interop run, written to docs/interop.md with its date and commit.
# make deb: the Debian package (build/deb); make test-hosts: Debian 12 hosts under real systemd.
.PHONY: test setup lint unit test-unit test-fuzz test-kernel test-interop test-e2e test-vm test-soak \
	test-chaos test-hosts hosts-prep deb fuzz soak-long chaos interop-table demo clean

PYTEST_PAR ?= -n 2 --dist loadfile
REPORTS := build/test-reports
# the tiers of `make test`, in order; each writes $(REPORTS)/NAME.exit (and NAME.json)
TIERS := lint unit fuzz kernel interop e2e vm soak chaos hosts
TIER_TARGETS := lint test-unit test-fuzz test-kernel test-interop test-e2e test-vm test-soak test-chaos test-hosts
FUZZ_SECONDS ?= 600
# inside `make test`: a few seconds per target, the whole step well under two minutes
FUZZ_TEST_SECONDS ?= 6
SOAK_SECONDS ?= 60

# the hosts tier's image and .deb are built in the background (hosts-prep) while the others run
test: setup
	@rm -rf $(REPORTS)
	@scripts/hosts-prep start
	@status=0; $(MAKE) --no-print-directory -k $(TIER_TARGETS) || status=$$?; \
	.venv/bin/python scripts/test_summary.py --reports $(REPORTS) $(TIERS) || status=1; \
	exit $$status

setup:
	@scripts/setup.sh

lint: setup
	@scripts/run-step lint .venv/bin/ruff check .

unit test-unit: setup
	@scripts/pytest-tier unit tests/unit $(PYTEST_PAR) -q

# short, bounded fuzzing: every target, the committed corpus replayed, any finding fails
test-fuzz: setup
	@scripts/run-step fuzz .venv/bin/python -m fuzz.run --seconds $(FUZZ_TEST_SECONDS) --jobs 2 \
		--work build/fuzz-test --tier-report $(REPORTS)/fuzz.json

test-kernel: setup
	@scripts/pytest-tier kernel tests/kernel $(PYTEST_PAR) -q

test-interop: setup
	@scripts/pytest-tier interop tests/interop $(PYTEST_PAR) -q

test-e2e: setup
	@scripts/pytest-tier e2e tests/e2e -q

test-vm: setup
	@scripts/pytest-tier vm tests/vm -q

test-soak: setup
	@TORTIE_SOAK_SECONDS=$(SOAK_SECONDS) scripts/pytest-tier soak tests/soak -q

# chaos with traffic, short: each kind of event once, on a rotating host (a few minutes)
test-chaos: setup
	@scripts/pytest-tier chaos tests/chaos -q

# the fuzzing campaign: FUZZ_SECONDS per target, two at a time, corpus kept under build/fuzz
fuzz: setup
	.venv/bin/python -m fuzz.run --seconds $(FUZZ_SECONDS) --jobs 2 --keep-going --coverage \
		--report build/fuzz/report.json $(FUZZ_TARGETS)

# the documented long soak: an hour of flapping, the full count of abused cluster files
soak-long: setup
	@TORTIE_SOAK_SECONDS=3600 TORTIE_ABUSE_FILES=10000 scripts/pytest-tier soak tests/soak -q -s

# one whole interop run, then docs/interop.md from exactly that run (its date and commit)
interop-table: setup
	@rm -f build/interop/results.json
	@scripts/pytest-tier interop tests/interop $(PYTEST_PAR) -q; rc=$$?; \
	.venv/bin/python scripts/interop_table.py build/interop/results.json docs/interop.md && exit $$rc

# every kind of chaos event on every host, then docs/reliability.md's chaos table from exactly that run
chaos: setup
	@rm -f build/chaos/results.json
	@TORTIE_CHAOS_HOSTS=all scripts/pytest-tier chaos tests/chaos -q; rc=$$?; \
	.venv/bin/python scripts/chaos_table.py build/chaos/results.json docs/reliability.md && exit $$rc

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
