# Two commands set everything up: `make demo` and `make test`. Both install first, into ./.venv.
#   TORCH_SPEC  which torch to install (default torch==2.13.0, the CPU build).
#               On a CUDA machine: make install TORCH_SPEC="torch>=2.4" (PyPI's Linux wheels are CUDA builds)
#   PYTHON      the interpreter that creates the venv (default python3, 3.10+)
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hcm-installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test,parser,bench,tensorboard]"
	echo "$(TORCH_SPEC)" > $@

demo: install
	$(VENV)/bin/hcm quickstart

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) hcm-work build *.egg-info
