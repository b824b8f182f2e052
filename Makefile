# Two commands do everything on a fresh machine:  make book  ·  make test
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: a local CPU wheel of this version exists on our machines; any other version pulls CUDA wheels.
TORCH ?= torch==2.13.0
JOBS ?= 2
DATA ?= $(wildcard ../shared/data)

.PHONY: setup export sync-check test test-lib test-fast test-nbs book clean test-site test-browser test-colab \
	lint page-check diagrams test-interop
.DEFAULT_GOAL := test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

setup: $(VENV)/.installed

export: setup
	$(BIN)/nbdev_export

# The package must equal what the notebooks export, and the tree must be clean afterwards.
sync-check: export
	@git diff --exit-code --stat || { echo "the tree differs from what is committed after nbdev_export: export, then commit (or stash) the changes"; exit 1; }
	@test -z "$$(git status --porcelain)" || { git status --porcelain; echo "untracked files after nbdev_export: commit or ignore them"; exit 1; }
	@echo "sync check: encoder_book/ equals what the notebooks export"

# One thread per test process: JOBS processes already fill the cores, and more threads than cores make
# torch's threads spin-wait for each other (quick mode: about twice as slow).
# MARK selects tests by marker: `make test-lib MARK="not slow"` skips the subprocess and torchrun tests.
MARK ?=
test-lib: setup
	OMP_NUM_THREADS=1 ENCODER_BOOK_QUICK=1 $(BIN)/python -m pytest tests -q -n $(JOBS) --durations=8 $(if $(MARK),-m "$(MARK)")

# The library's tests without the slow ones: the quick loop while editing a chapter.
test-fast: setup
	$(MAKE) test-lib MARK="not slow"

# ruff and mypy with their configuration in pyproject.toml ([tool.ruff], [tool.mypy]).
lint: setup
	$(BIN)/ruff check encoder_book tests tools scripts
	$(BIN)/mypy

# What a reader should not meet on the pages, counted per chapter (a report: make test prints it last; the counts
# that are zero are kept at zero by tests/test_book.py and tests/test_site.py).
page-check:
	$(BIN)/python tools/page_check.py

# Redraw the architecture diagrams in chapters/figures/ (committed; the book does not need this to build).
diagrams:
	$(BIN)/python tools/diagrams.py

# The interop tests (tokenizer and BERT against HF) once more, on the other transformers major: the main venv has
# the newest 5.x (the dev extra), this one the newest 4.x. This venv is layered on the main one (a .pth file puts
# the main venv's site-packages after its own), so it reuses torch and the rest and holds only transformers 4.x and
# the hub and tokenizers versions it needs, which shadow the main venv's; the package itself without its deps.
TF_OTHER ?= transformers>=4.40,<5
VENV_TF ?= .venv-tf4
INTEROP_TESTS ?= tests/test_tokenizer.py tests/test_tokenizer_hf.py tests/test_bert.py tests/test_bert_hf.py

$(VENV_TF)/.installed: $(VENV)/.installed pyproject.toml
	rm -rf $(VENV_TF)
	$(PYTHON) -m venv $(VENV_TF)
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" \
	  > $$($(VENV_TF)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/_main_venv.pth
	$(VENV_TF)/bin/python -m pip install -q "$(TF_OTHER)"
	$(VENV_TF)/bin/python -m pip install -q --no-deps -e .
	touch $@

test-interop: $(VENV_TF)/.installed
	$(VENV_TF)/bin/python -c "import transformers; print('interop on transformers', transformers.__version__)"
	ENCODER_BOOK_QUICK=1 $(VENV_TF)/bin/python -m pytest -q -p no:cacheprovider $(wildcard $(INTEROP_TESTS))

test-nbs: setup
	OMP_NUM_THREADS=1 ENCODER_BOOK_QUICK=1 $(BIN)/python -m pytest --nbval-lax --nbval-current-env -q -n $(JOBS) --dist loadscope --durations=8 chapters

book: export
	$(BIN)/python tools/perf_tables.py
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

# The built site: static checks (pages, Colab links, no CDN), then every page in headless Chromium (skipped with a
# message when Chromium is missing; ENCODER_BOOK_REQUIRE_BROWSER=1, set by .ci/run, makes that an error).
test-site: book
	ENCODER_BOOK_SITE_TESTS=1 $(BIN)/python -m pytest tests/test_site.py -q

test-browser: book
	$(BIN)/python tools/browser_check.py _build/html --screenshots _build/screenshots

# Colab, simulated: a fresh venv, chapter 1's own install cell, then the chapter in quick mode (about a minute).
test-colab: setup
	ENCODER_BOOK_COLAB_TEST=1 ENCODER_BOOK_QUICK=1 $(BIN)/python -m pytest tests/test_colab.py -q

# Each step in turn, timed: the table at the end says where the minutes go (the budget is 10 on 2 cores).
TEST_STEPS := setup sync-check lint test-lib test-interop test-nbs book test-site test-browser test-colab \
	page-check
test:
	@times=$$(mktemp); trap 'rm -f $$times' EXIT; \
	for step in $(TEST_STEPS); do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$step || { echo "make test: $$step failed"; exit 1; }; \
	  printf '%-14s %5d s\n' $$step $$(( $$(date +%s) - start )) >> $$times; \
	done; \
	echo "make test: seconds per step"; cat $$times; \
	awk '{ s += $$2 } END { printf "%-14s %5d s\n", "total", s }' $$times; \
	echo "make test: all checks passed"

clean:
	rm -rf _build .pytest_cache
