# Two commands do all the set-up on a fresh machine (see README.md):
#   make serve   -> the scoring service, locally, on a small demo model
#   make test    -> the whole test suite (what .ci/run runs)
PYTHON ?= python3
PORT ?= 5001
VENV := .venv
CHECKOV_VENV := .venv-checkov
AZURITE_DIR := tests/azurite
UV_VERSION := 0.13.8
# A real Prometheus for tests/monitoring/test_compare_prometheus.py: Debian's package,
# unpacked into the checkout (dpkg -x) rather than installed, so its maintainer scripts
# never start a system-wide daemon on 0.0.0.0:9090; the test starts it on 127.0.0.1.
PROMETHEUS_DEB_VERSION := 2.42.0+ds-5+deb12u1
PROMETHEUS := .prometheus/usr/bin/prometheus
# Some machine images set PYTHONDONTWRITEBYTECODE; then every process that imports
# TensorFlow (each test server, each benchmark stage) recompiles it (~14 s instead of ~5 s).
# An empty value switches it off; the bytecode lands in our own venv.
export PYTHONDONTWRITEBYTECODE :=

# The container tests (tests/container) build the image and run it: Debian's docker.io
# runs it, buildah builds it (named build contexts, as buildx), debootstrap makes the
# local CPU base (tests/container/base_image.py), socat reaches the container's ports.
CONTAINER_TOOLS := dockerd buildah debootstrap socat
CONTAINER_PACKAGES := docker.io buildah debootstrap socat

.PHONY: setup rig-check container-tools serve test bench triton-venv kserve-venv clean
# `make bench ARGS="--quick"` passes options to the benchmark (python -m bench --help).

setup: rig-check $(VENV)/.installed $(CHECKOV_VENV)/.installed container-tools $(AZURITE_DIR)/node_modules/.installed $(PROMETHEUS)

# What the test rig needs from the machine (README, "Testing"), checked before anything
# long starts; each miss is one line. `make serve` and the deploy path need none of it.
RIG_FREE_GB := 12
rig-check:
	@$(PYTHON) -c 'import sys; sys.exit(None if sys.version_info >= (3, 11) else "make test: needs Python 3.11 or newer; $(PYTHON) is " + sys.version.split()[0])'
	@command -v npm >/dev/null || { echo "make test: needs npm (Node.js 20+) for Azurite, the storage emulator the model-store tests run" >&2; exit 1; }
	@command -v apt-get >/dev/null && command -v dpkg >/dev/null || { echo "make test: needs a Debian or Ubuntu machine (apt-get, dpkg): docker.io, buildah, debootstrap and Prometheus come from its archive" >&2; exit 1; }
	@free=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); [ "$$free" -ge $(RIG_FREE_GB) ] || { echo "make test: needs $(RIG_FREE_GB) GB free here (the venvs and the test images), $$free GB free" >&2; exit 1; }
	@missing=; for tool in $(CONTAINER_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" != 0 ]; then echo "make test: missing$$missing; as root: apt-get install $(CONTAINER_PACKAGES)" >&2; exit 1; fi

# Azurite, the Azure Storage emulator the model-fetch tests run (tests/model_store), at the
# version $(AZURITE_DIR)/package-lock.json pins, from the npm registry. A test tool only, so
# its npm project lives under tests/ and installs into $(AZURITE_DIR)/node_modules.
$(AZURITE_DIR)/node_modules/.installed: $(AZURITE_DIR)/package.json $(AZURITE_DIR)/package-lock.json
	cd $(AZURITE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Installed from Debian's archive when one is missing (needs root; the tests start dockerd).
container-tools:
	@missing=; for tool in $(CONTAINER_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt: $(CONTAINER_PACKAGES))"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(CONTAINER_PACKAGES) >/dev/null; \
	fi

# uv is installed inside the venv itself, so nothing touches the system Python.
$(VENV)/.installed: requirements.txt scoring_app/requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	VIRTUAL_ENV=$(VENV) $(VENV)/bin/uv pip install -q -r requirements-dev.txt
	touch $@

# checkov pins packaging<24 while pulumi needs packaging>=26: it gets a venv of its own.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	VIRTUAL_ENV=$(CHECKOV_VENV) $(CHECKOV_VENV)/bin/uv pip install -q -r requirements-checkov.txt
	touch $@

# apt-get download needs no root once the package lists are there; a fresh machine
# without them gets one `apt-get update` (root, as CI runs).
$(PROMETHEUS):
	rm -rf .prometheus .prometheus-deb && mkdir -p .prometheus-deb
	cd .prometheus-deb && { apt-get download -q prometheus=$(PROMETHEUS_DEB_VERSION) \
	  || { apt-get update -qq && apt-get download -q prometheus=$(PROMETHEUS_DEB_VERSION); }; }
	dpkg -x .prometheus-deb/prometheus_*.deb .prometheus
	rm -rf .prometheus-deb
	$(PROMETHEUS) --version

serve: $(VENV)/.installed
	$(VENV)/bin/python -m scoring_tools.quickstart --port $(PORT)

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	CHECKOV=$(CHECKOV_VENV)/bin/checkov PROMETHEUS=$(PROMETHEUS) $(VENV)/bin/python -m pytest

bench: $(VENV)/.installed
	$(VENV)/bin/python -m bench $(ARGS)

# The benchmark's optional Triton peer: PyTriton in a venv of its own (it pins numpy<2)
triton-venv: $(VENV)/.installed
	bash bench/triton-venv.sh

# The benchmark's optional KServe peer: KServe's Python model server in a venv of its own
# (it brings FastAPI, uvicorn, pandas and grpcio-tools, which the app does not need)
kserve-venv: $(VENV)/.installed
	bash bench/kserve-venv.sh

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) $(AZURITE_DIR)/node_modules .demo .pytest_cache .prometheus
