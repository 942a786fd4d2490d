# Each target that needs the package sets it up first: .venv is created if missing and the
# package is installed (editable, with its extras) when pyproject.toml is newer than the last install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test docs bench lint clean

setup: $(STAMP)

# A .venv that cannot run pip on Python >= 3.10 (made half-way, by an older Python, or left
# behind by a Python that was upgraded) is made again; editable installs need pip >= 21.3.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || \
	  { echo "coreaffect needs Python >= 3.10; $(PYTHON) is older (set PYTHON=python3.x)" >&2; exit 1; }
	$(BIN)/python -c 'import sys, pip; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || \
	  { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet "pip>=21.3"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/coreaffect demo --out demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_data_path.py
	$(BIN)/python benchmarks/bench_hidden_route.py
	$(BIN)/python benchmarks/bench_dynamics.py
	$(BIN)/python benchmarks/bench_pipeline.py
	$(BIN)/python benchmarks/bench_stream.py
	$(BIN)/python benchmarks/bench_stream.py --preset lite
	$(BIN)/python benchmarks/synthetic_baselines.py

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf docs/_build .pytest_cache
