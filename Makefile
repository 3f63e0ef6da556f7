# Two commands: `make demo` runs the whole study on the offline demo, `make test` runs the
# test suite. Both create .venv from the pinned requirements when it is missing or stale.
VENV   ?= .venv
PYTHON ?= python3
CORES  ?= 2
PY     := $(VENV)/bin/python
DEMO   := --configfile config/demo.yaml

.PHONY: demo test report lint clean-demo venv

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) scripts/warm_numba_cache.py
	touch $@

demo: venv
	$(PY) -m snakemake --cores $(CORES) $(DEMO)
	$(PY) -m snakemake --cores 1 $(DEMO) --report results/demo/report.html
	@echo "demo done: results/demo/summary.json, results/demo/figures/, results/demo/report.html"

# Two workers, one test file each at a time (module fixtures stay shared within a file); the
# long workflow tests go first (conftest.py; --no-loadscope-reorder keeps that order instead of
# xdist's most-tests-first) so that they overlap. One OpenMP thread per in-process test: two
# workers on two cores, no spinning thread pools (rule jobs set their own threads).
test: venv
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# ruff (rule set in pyproject.toml), snakefmt on the Snakefile and rule files, snakemake --lint
lint: venv $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m snakefmt --check Snakefile workflow
	$(PY) -m snakemake --lint $(DEMO)

clean-demo:
	rm -rf results/demo
