# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXAMPLE := docs/examples/ada-example-plugin
STAMP := $(VENV)/.ada-installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml requirements-dev.txt $(wildcard plugins/*/pyproject.toml) \
          $(EXAMPLE)/pyproject.toml $(wildcard $(EXAMPLE)/ada_example_plugin/*.py)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# The example third-party plugin is installed like any outsider's package (not editable).
	$(PY) -m pip install --quiet --force-reinstall --no-deps ./$(EXAMPLE)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/ada compare configs/demo.toml

test: install
	$(PY) -m pytest -q

bench: install
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b --quick || exit 1; done

clean:
	rm -rf $(VENV) runs .pytest_cache
