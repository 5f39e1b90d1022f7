# The SALVE reproducible report.
#   make book [PROFILE=cpu|smoke|paper]   run the pipeline for a profile, then build the book
#   make html [PROFILE=...]               build the book from a profile's executed chapters (no re-running;
#                                         default: the committed reference edition, cpu)
#   make test                             unit tests + the whole smoke pipeline + a book build
#   make bench                            speed benchmarks (print ratios)
#   make clean                            remove the built book and pipeline scratch files
# Every target creates .venv first if it is missing.

PROFILE ?= cpu
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: book html test bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m salve_utils.pipeline run --profile $(PROFILE)
	$(MAKE) --no-print-directory html

html: $(STAMP)
	$(PY) -m salve_utils.pipeline errors --profile $(PROFILE)
	$(PY) -m salve_utils.pipeline toc --profile $(PROFILE) --out _build/toc/$(PROFILE).yml
	$(VENV)/bin/jupyter-book build . --toc _build/toc/$(PROFILE).yml --warningiserror --keep-going --quiet
	@echo "book: $(CURDIR)/_build/html/index.html"

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build data/runs
