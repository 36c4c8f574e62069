# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install run test lint fuzz bench clean browser mailserver

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,fast]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/hub run

# Pages are tested in a real headless Chromium (Debian's chromium + chromium-driver).
browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver)

# Mailboxes are tested against a real IMAP server (Debian's dovecot-imapd, started by the tests).
mailserver:
	test -x /usr/sbin/dovecot || ($(SUDO) apt-get update && $(SUDO) apt-get install -y dovecot-imapd)

test: $(STAMP) browser mailserver
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Schemathesis over the whole API, longer than `make test` does it: FUZZ_SECONDS on each
# store (both: 10 minutes in all), then requests and statuses per operation and token.
FUZZ_SECONDS ?= 300
FUZZ_EXAMPLES ?= 10
fuzz: $(STAMP)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q \
		-o timeout=0 tests/test_api_fuzz.py -k every_operation

# The intake benchmark drives its load with wrk (a Debian package); BENCH_ARGS go to
# bench/intake.py, e.g. BENCH_ARGS="--store sqlite --hub-root ../baseline".
bench: $(STAMP)
	command -v wrk >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y wrk)
	$(BIN)/python bench/intake.py $(BENCH_ARGS)
	$(BIN)/python bench/dedupe.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache *.egg-info
