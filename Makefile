# Two commands set everything up: `make demo` and `make test`. Both install first, into ./.venv.
#   TORCH_SPEC  which torch to install (default torch==2.13.0, the CPU build).
#               On a CUDA machine: make install TORCH_SPEC="torch>=2.4" (PyPI's Linux wheels are CUDA builds)
#   PYTHON      the interpreter that creates the venv (default python3, 3.10+)
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hcm-installed

.PHONY: install demo test bench clean mutate

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,parser,bench,tensorboard,postgres,serve]"
	echo "$(TORCH_SPEC)" > $@

demo: install
	$(VENV)/bin/hcm quickstart

# The linter (ruff, settings in pyproject.toml), then every test (the slow ones too). A lint finding
# fails the target before pytest runs; pytest's exit status is make's: a failure, or no test
# collected (status 5), fails the target. PYTEST_ARGS passes options, e.g. PYTEST_ARGS='-m "not slow"'.
test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Each CPU timing benchmark once at a small size, to check that it runs: a few minutes on 2 cores.
# bench_ot leaves out KeOps here (compiling its formulas takes minutes; tests/model/test_ot.py
# runs it). The sizes and commands of the measured runs: benchmarks/RESULTS.md.
bench: install
	$(PY) benchmarks/bench_cache.py --items 200 --shard-size 100 --reads 200
	$(PY) benchmarks/bench_extract.py overlap --clips 40
	$(PY) benchmarks/bench_ot.py peers --batch 8 --nodes 20 --dim 32 --repeats 3 --skip keops
	$(PY) benchmarks/bench_step.py --batch 8 --repeats 1

clean:
	rm -rf $(VENV) hcm-work build *.egg-info

# Mutation testing (mutmut) of the modules that decide results, each against its own tests
# (tests/helpers/mutation.py maps them); slow (hours for all on 2 cores), not part of `make test` or CI.
# MUTATE_MODULES picks some, e.g. make mutate MUTATE_MODULES="training/metrics.py core/numpy_pickle.py".
# Report: build/mutate/survivors.md; the measured scores and the equivalent survivors: benchmarks/RESULTS.md.
# MUTATE_MODULES="--recheck MODULE NAME..." writes survivors of MODULE's last run into its source and runs its tests.
mutate: install
	$(PY) -m pip install --quiet "mutmut==3.8.1"
	$(PY) tests/helpers/mutation.py $(MUTATE_MODULES)
