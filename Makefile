# hwbench: `make run` and `make test` are the two commands a fresh machine needs (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
PORT ?= 3000
# torch first, pinned to the exact build: a looser spec pulls a multi-GB CUDA build on some machines.
TORCH_SPEC ?= torch==2.13.0
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED = false

.PHONY: install browsers web compiler run test lint ui clean-data

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The browser targets (onnxruntime-web in headless Chromium and Firefox) and the UI's browser test need Debian's
# chromium and firefox-esr, and node/npm to install onnxruntime-web: install what is missing when apt can (as
# root); otherwise the targets are absent (`hwbench targets` says why) and their tests skip saying so.
browsers:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium fonts-liberation"; \
	command -v firefox-esr >/dev/null 2>&1 || command -v firefox >/dev/null 2>&1 || missing="$$missing firefox-esr"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing for the browser targets"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        $$missing >/dev/null; } || echo "warning:$$missing could not be installed: those browser targets are absent"; \
	  else \
	    echo "warning:$$missing missing and apt-get needs root here: those browser targets are absent"; \
	  fi; \
	fi

# onnxruntime-web for the browser targets' page, pinned by web/package-lock.json, served from this checkout
web: web/node_modules/.installed

web/node_modules/.installed: web/package.json web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix web --no-audit --no-fund --ignore-scripts --loglevel=error && touch $@; \
	else \
	  echo "warning: npm is missing: onnxruntime-web is not installed and the browser targets are absent"; \
	fi

# torch.compile (the generation scenario's compiled cache) and optimum-quanto (its int4/int2 KV caches) build C++
# on the CPU: install g++ when it is missing and apt can (as root); otherwise those configurations fail saying so.
compiler:
	@if ! command -v g++ >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing g++ for torch.compile and the quantized KV caches"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        g++ >/dev/null; } || echo "warning: g++ could not be installed: compiled and int4/int2 KV caches will fail"; \
	  else \
	    echo "warning: g++ is missing and apt-get needs root here: compiled and int4/int2 KV caches will fail"; \
	  fi; \
	fi

run: install browsers web compiler
	$(VENV)/bin/hwbench run --profile $(PROFILE)

test: install browsers web compiler
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/ruff check .

ui: install
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p $(PORT)

clean-data:
	rm -rf data/warehouse data/hwbench.duckdb data/predictor data/reports data/.locks
