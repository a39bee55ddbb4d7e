# Two commands on a fresh machine:  `make demo` (set up + probe the embedded model)
# and `make test` (set up + run the test suite). Everything lives in .venv.
# `make docs` builds the documentation site into site/ (offline, --strict);
# `make notebooks` runs both notebooks (executed copies in runs/notebooks/;
# DFTLENS_NB_QUICK=1 make notebooks for the short versions).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# The CPU build on this kind of machine; GPU users: `make setup TORCH=torch==<your build>`.
TORCH  ?= torch==2.13.0
OUT    ?= runs/demo

.PHONY: setup demo test bench docs notebooks clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/dftlens probe --model gemma3-270m --out $(OUT) --overwrite

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: setup
	$(BIN)/python benchmarks/capture_speed.py
	$(BIN)/python benchmarks/probe_speed.py

docs: setup
	$(BIN)/mkdocs build --strict

notebooks: setup
	$(BIN)/python tests/notebook_runner.py --out runs/notebooks notebooks/latent_language.ipynb notebooks/dft_before_after.ipynb

clean:
	rm -rf $(VENV) runs site .pytest_cache
