# qponder: the two set-up commands are `make demo` and `make test`; both install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install browser demo test test-fast lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned to the CPU wheel; everything after is constrained to it
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# the web page's browser test drives Debian's chromium (Playwright never downloads one);
# without it (no root, no apt) that test fails rather than skips: QPONDER_SKIP_BROWSER=1
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  echo "could not install chromium: tests/test_serve_browser.py will fail" >&2

demo: install
	$(BIN)/qponder demo --out runs/demo

test: install browser
	$(BIN)/python -m ruff check qponder tests benchmarks
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/python -m ruff check qponder tests benchmarks
	$(BIN)/python -m ruff format --check qponder tests benchmarks

clean:
	rm -rf $(VENV) runs build *.egg-info
