# Two commands do all the set-up on a fresh machine (see README.md):
#   make serve   -> the scoring service, locally, on a small demo model
#   make test    -> the whole test suite (what .ci/run runs)
PYTHON ?= python3
PORT ?= 5001
VENV := .venv
CHECKOV_VENV := .venv-checkov
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
# local CPU base (container/base_image.py), socat reaches the container's ports.
CONTAINER_TOOLS := dockerd buildah debootstrap socat
CONTAINER_PACKAGES := docker.io buildah debootstrap socat

.PHONY: setup container-tools serve test bench triton-venv kserve-venv clean
# `make bench ARGS="--quick"` passes options to the benchmark (python -m bench --help).

setup: $(VENV)/.installed $(CHECKOV_VENV)/.installed container-tools node_modules/.installed $(PROMETHEUS)

# Azurite, the Azure Storage emulator the model-fetch tests run (tests/model_store), at the
# version package-lock.json pins, from the npm registry.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Installed from Debian's archive when one is missing (needs root; the tests start dockerd).
container-tools:
	@missing=; for tool in $(CONTAINER_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing; as root: apt-get install $(CONTAINER_PACKAGES)" >&2; exit 1; fi; \
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
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .demo .pytest_cache .prometheus
