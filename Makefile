# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the course into it when needed (and do nothing extra when it is
# already up to date: the stamp file is newer than pyproject.toml). They install the instructor's
# extras too (`.[grading,dev]`); a student needs only the base install (`pip install .`).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.dlworkshop-installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Cap BLAS/torch threads at the 2 cores the course budgets for (override: make test THREADS=4).
THREADS ?= 2
export OMP_NUM_THREADS ?= $(THREADS)
export OPENBLAS_NUM_THREADS ?= $(THREADS)
export MKL_NUM_THREADS ?= $(THREADS)
export MPLBACKEND ?= Agg

.PHONY: setup demo test test-variants lint release calibrate bench clean system-deps check-system-deps bench-graders bench-class

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the course and its dependencies into $(VENV) (first time: a few minutes)"
	@$(PY) -m pip install --quiet -e '.[grading,dev]' > $(VENV)/pip-install.log 2>&1 \
		|| { cat $(VENV)/pip-install.log; exit 1; }
	$(PY) -c "import dlworkshop, nbgrader, torch, torchvision, mlxtend"
	@touch $(STAMP)

# The demo grades in the sandbox: it installs bubblewrap (and PostgreSQL) when it can, and
# otherwise says what is missing and grades unsandboxed, loudly.
demo: setup
	@bash scripts/system-deps.sh install || bash scripts/system-deps.sh check
	$(PY) -m graders demo

test: setup check-system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest

# every mutant and alternative, `extended = true` ones too (make test runs the others)
test-variants: setup
	DLWORKSHOP_ALL_VARIANTS=1 $(PY) -m pytest tests/test_mutations.py

lint: setup
	$(PY) -m ruff check .

release: setup
	$(PY) -m graders release

# every assignment with a source/<a>/grading/calibration.toml
calibrate: setup
	$(PY) scripts/calibrate.py

# bubblewrap (sandboxed kernels) and PostgreSQL (its gradebook tests): `make system-deps`
# installs the missing ones with apt (root); demo and test only say what is missing.
system-deps:
	@bash scripts/system-deps.sh install

check-system-deps:
	@bash scripts/system-deps.sh check

bench: setup
	$(PY) scripts/bench_autograde.py

# submissions per minute: plain serial nbgrader vs `graders autograde` with 1, 2, N workers
bench-graders: setup
	$(PY) scripts/bench_graders.py

# a whole synthetic class graded as an instructor would: 200 students x every assignment (hours
# on 2 cores: make bench-class ARGS="--students 4"); appends to docs/benchmarks/class.md
bench-class: setup
	$(PY) scripts/bench_class.py $(ARGS)

clean:
	rm -rf autograded/* submitted/* feedback/* gradebook.db reports .pytest_cache
	@touch autograded/.gitkeep submitted/.gitkeep feedback/.gitkeep
