# Two commands: `make demo` runs the whole study on the offline demo, `make test` runs the
# test suite. Both create .venv from the pinned requirements when it is missing or stale.
VENV   ?= .venv
PYTHON ?= python3
CORES  ?= 2
# extra pip options for the requirements, e.g. the CPU-only torch build on Linux (PyPI's Linux
# wheel of torch 2.13.0 pulls about 3 GB of CUDA libraries):
#   make demo PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_ARGS ?=
PY     := $(VENV)/bin/python
DEMO   := --configfile config/demo.yaml

.PHONY: demo test report lint clean-demo venv check-envs

venv: $(VENV)/.installed

# A new .venv needs Python 3.11, 3.12 or 3.13 (pyproject.toml's requires-python; every pin of
# requirements.txt has a wheel for those three, and numpy/pandas/scipy need 3.11): checked first,
# in one line, instead of pip failing minutes later on an obscure pin. A .venv without its
# .installed stamp is an unfinished build (failed or interrupted): it is removed and built
# again, never reused; a failed build removes it at once. A finished .venv whose stamp is older
# than requirements.txt is updated in place and keeps its old stamp until the update succeeds.
$(VENV)/.installed: requirements.txt
	@if [ ! -f $@ ]; then \
	  ver=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	  case "$$ver" in 3.11|3.12|3.13) ;; \
	    *) echo "make: $(VENV) needs Python 3.11, 3.12 or 3.13, and PYTHON=$(PYTHON) is $${ver:-not a working Python}: run make PYTHON=python3.12 (or another of those)" >&2; exit 1;; \
	  esac; \
	  rm -rf $(VENV); \
	  echo "$(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }; \
	fi
	$(PY) -m pip install --quiet --upgrade pip && \
	  $(PY) -m pip install --quiet $(PIP_ARGS) -r requirements.txt && \
	  $(PY) scripts/warm_numba_cache.py || \
	  { test -f $@ || { echo "make: the build of $(VENV) failed; removed it" >&2; rm -rf $(VENV); }; exit 1; }
	touch $@

demo: venv
	$(PY) -m snakemake --cores $(CORES) $(DEMO)
	$(PY) -m snakemake --cores 1 $(DEMO) --report results/demo/report.html
	@echo "demo done: results/demo/summary.json, results/demo/figures/, results/demo/report.html"

# Three workers, one test file each at a time (module fixtures stay shared within a file); the
# long workflow tests go first (conftest.py; --no-loadscope-reorder keeps that order instead of
# xdist's most-tests-first) so that they overlap. Three on two cores: the workflow fixtures spend
# part of their time in single-threaded rule chains and Snakemake's own waits, and with two
# workers the last long fixture ran alone at the end (72 % of two cores used over the suite).
# One OpenMP thread per in-process test: no spinning thread pools (rule jobs set their own threads).
test: venv
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 3 --dist loadfile --no-loadscope-reorder

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# ruff (rule set in pyproject.toml), snakefmt on the Snakefile and rule files, snakemake --lint
lint: venv $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m snakefmt --check Snakefile workflow
	$(PY) -m snakemake --lint $(DEMO)

# Each conda env of envs/ built for real from its pins (PyPI spellings, uv) as a venv cached in
# ~/.cache/seqxai/envs (SEQXAI_ENV_CACHE), and every module of each of its rules imported there in
# isolation (docs/development.md, "Environments checked for real").
check-envs: venv $(VENV)/.installed-dev
	$(PY) scripts/check_envs.py

clean-demo:
	rm -rf results/demo
