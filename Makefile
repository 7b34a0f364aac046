# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXAMPLE := docs/examples/ada-example-plugin
STAMP := $(VENV)/.ada-installed

PLUGINS := plugins/ada-captum plugins/ada-scgm plugins/ada-unet

.PHONY: install demo test bench wheels wheel-check clean

$(STAMP): pyproject.toml requirements-dev.txt $(wildcard plugins/*/pyproject.toml) \
          $(EXAMPLE)/pyproject.toml $(wildcard $(EXAMPLE)/ada_example_plugin/*.py)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The example third-party plugin is installed like any outsider's package (not editable).
	$(PY) -m pip install --quiet --force-reinstall --no-deps ./$(EXAMPLE)
	touch $(STAMP)

install: $(STAMP)

# --resume: an interrupted demo continues where it stopped (finished jobs are reused).
demo: install
	$(VENV)/bin/ada compare configs/demo.toml --resume

test: install
	$(PY) -m pytest -q

# Wheels of ada-seg and the three first-party plugins, into dist/.
wheels: install
	rm -rf dist
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist . $(PLUGINS)
	rm -rf build $(addsuffix /build,$(PLUGINS))  # setuptools' copies would shadow the sources
	ls dist

# The wheels installed into a fresh venv (not this one), then `ada plugins` and a tiny compare.
wheel-check: wheels
	PYTHON=$(PYTHON) .ci/wheel_check

bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache dist build
