# The SALVE reproducible report.
#   make book [PROFILE=cpu|smoke|paper] [JOBS=n]  run the pipeline for a profile (n nodes side by side), then build the book
#   make html [PROFILE=...]               build the book from a profile's executed chapters (no re-running;
#                                         default: the committed reference edition, cpu)
#   make test                             unit tests + the whole smoke pipeline + a book build
#   make bench                            speed benchmarks (print ratios)
#   make clean                            remove the built book and pipeline scratch files
# Every target creates .venv first if it is missing.

PROFILE ?= cpu
# nodes run side by side by make book (the same bytes; 2 fills a 2-core machine whose nodes leave a core idle)
JOBS ?= 1
# make test runs test files on this many workers (pytest-xdist), each test and each notebook kernel it
# starts on one thread: two torch threads on a core the other worker keeps busy run slower than one
TEST_WORKERS ?= 2
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_WAIT_POLICY ?= PASSIVE

MATHJAX := _assets/mathjax/tex-chtml-full.js

.PHONY: book html test bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m salve_utils.pipeline run --profile $(PROFILE) --jobs $(JOBS)
	$(MAKE) --no-print-directory html

# MathJax is served by the book itself (no CDN): npm installs the pinned, checksummed
# package of package-lock.json, and the parts the pages load are copied to _static/.
$(MATHJAX): package-lock.json
	npm ci --no-audit --no-fund --silent
	rm -rf _assets/mathjax && mkdir -p _assets/mathjax
	cp -r node_modules/mathjax/es5/tex-chtml-full.js node_modules/mathjax/es5/output node_modules/mathjax/es5/input \
	  node_modules/mathjax/es5/ui node_modules/mathjax/es5/a11y node_modules/mathjax/es5/adaptors _assets/mathjax/
	touch $(MATHJAX)

html: $(STAMP) $(MATHJAX)
	$(PY) -m salve_utils.pipeline errors --profile $(PROFILE)
	$(PY) -m salve_utils.pipeline toc --profile $(PROFILE) --out _build/toc/$(PROFILE).yml
	$(VENV)/bin/jupyter-book build . --toc _build/toc/$(PROFILE).yml --warningiserror --keep-going --quiet
	@echo "book: $(CURDIR)/_build/html/index.html"

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf _build data/runs _assets/mathjax
