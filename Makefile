# hwbench: `make run` and `make test` are the two commands a fresh machine needs (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
PORT ?= 3000
# torch first, pinned to the exact build: a looser spec pulls a multi-GB CUDA build on some machines.
TORCH_SPEC ?= torch==2.13.0
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export GX_ANALYTICS_ENABLED = false

.PHONY: install chromium compiler run test lint ui clean-data

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The browser test renders the Dagster UI in Debian's chromium: install it when missing and apt can (as root);
# otherwise that one test skips and says why.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        chromium fonts-liberation >/dev/null; } || echo "warning: chromium could not be installed: the browser test will skip"; \
	  else \
	    echo "warning: /usr/bin/chromium is missing and apt-get needs root here: the browser test will skip"; \
	  fi; \
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

run: install compiler
	$(VENV)/bin/hwbench run --profile $(PROFILE)

test: install chromium compiler
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

lint: install
	$(VENV)/bin/ruff check .

ui: install
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p $(PORT)

clean-data:
	rm -rf data/warehouse data/hwbench.duckdb data/predictor data/reports data/.locks
