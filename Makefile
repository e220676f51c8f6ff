# ovsd: `make run` sets up and starts the switch; `make test` sets up and runs the tests.
SHELL := /bin/bash
# Debian's own interpreter when there is one: it is built with profile-guided
# and link-time optimization, which one built from source with default flags
# (pyenv's, say) is not, and the PMD's per-packet work runs ~20% faster on it.
PY ?= $(firstword $(wildcard /usr/bin/python3) python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/ovsd.toml
PYTEST_ARGS ?=

.PHONY: all setup host-deps run test bench demo clean fuzz soak

all: setup

# Debian packages the switch and its tests need (as root; skipped when present).
host-deps:
	@bash scripts/host-deps.sh

$(BIN)/ovsd: pyproject.toml
	@if ! $(PY) -m venv --help >/dev/null 2>&1 || ! $(PY) -c 'import ensurepip' 2>/dev/null; then \
		bash scripts/host-deps.sh python; fi
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $@

# A venv made by another interpreter than $(PY) is made again.
setup: host-deps
	@real='import os, sys; print(os.path.realpath(sys._base_executable))'; \
	want=$$($(PY) -c "$$real" 2>/dev/null || true); have=$$($(BIN)/python -c "$$real" 2>/dev/null || true); \
	if [ -n "$$have" ] && [ -n "$$want" ] && [ "$$have" != "$$want" ]; then \
		echo "$(VENV) was made with $$have, not $$want: making it again"; rm -rf $(VENV); fi
	@$(MAKE) --no-print-directory $(BIN)/ovsd

run: setup
	$(BIN)/ovsd --config $(CONFIG)

# Exit status 5 means pytest collected nothing: never call that green.
test: setup
	$(BIN)/pytest -q $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Two namespaces ping each other through ovsd (system ports, a PMD); cleans up.
demo: setup
	bash scripts/demo.sh

bench: setup
	@bash scripts/host-deps.sh bench
	$(BIN)/python -m bench $(SCENARIO)

# Coverage-guided fuzzing (atheris): one target for SECONDS, or every target briefly.
FUZZ_TARGETS := packet flow_text vhost_protocol vring jsonrpc
fuzz: setup
	@if [ -n "$(TARGET)" ]; then \
		$(BIN)/python -m tests.fuzz.run $(TARGET) --seconds $(or $(SECONDS),60); \
	else \
		for t in $(FUZZ_TARGETS); do \
			$(BIN)/python -m tests.fuzz.run $$t --seconds $(or $(SECONDS),20) || exit 1; \
		done; \
	fi

# Every port type forwarding at once for MINUTES while flows change; then a report.
soak: setup
	$(BIN)/python -m bench.soak $(or $(MINUTES),10)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
