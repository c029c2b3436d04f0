# MDR pipeline — `make demo` runs the main job on bundled data; `make test` installs what the tests need and runs them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo replay-demo report-demo test lint bench clean system-deps

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

-include kafka/kafka.mk

# System packages the tests need (CI runs as root on a fresh Debian machine).
system-deps:
	@need=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	command -v pdftoppm >/dev/null 2>&1 || need="$$need poppler-utils"; \
	ldconfig -p | grep -q libpangoft2-1.0 || need="$$need libpango-1.0-0 libpangoft2-1.0-0"; \
	command -v java >/dev/null 2>&1 || need="$$need openjdk-17-jre-headless"; \
	command -v mvn >/dev/null 2>&1 || need="$$need maven"; \
	command -v chromium >/dev/null 2>&1 || need="$$need chromium"; \
	command -v chromedriver >/dev/null 2>&1 || need="$$need chromium-driver"; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$need; \
	  else echo "missing system packages:$$need (install them as root)"; fi; \
	fi

demo: install
	$(BIN)/mdr demo

replay-demo: install
	$(BIN)/mdr replay samples/lab-1 --tenant shop --host web-01 --out out/ \
	  --assets samples/lab-1-context/assets.yaml --intel samples/lab-1-context/intel.csv

report-demo: install
	$(BIN)/mdr report --tenant shop --period day --from 2026-11-24 --out out/report-shop-2026-11-24.html

test: install system-deps kafka-jars
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# Everything but the tests of the real Kafka broker and of PostgreSQL (markers `kafka`, `postgres`).
test-fast: install
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/pytest -m "not kafka and not postgres" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check pipeline tests bench
	$(BIN)/mypy

# Everything the commands leave in the repository (all of it in .gitignore); a broker started with
# `mdr broker start` from here is stopped first.
clean:
	@if [ -x $(BIN)/mdr ] && [ -d .mdr-kafka ]; then $(BIN)/mdr broker stop --data-dir .mdr-kafka; fi
	rm -rf out .pytest_cache .mdr-kafka .mdr-worker report-*.html report-*.md report-*.pdf report-*_charts \
	  verdicts.jsonl
