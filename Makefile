# The kit's two commands: `make lab` opens the notebooks, `make test` checks everything.
# Both create the virtual environment in .venv on first use (only Python >= 3.10 is needed).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,bpe,dask,spark
LAB_DIR ?= my-notebooks
LAB_ARGS ?=

.PHONY: lab test lint check clean

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "iokit needs Python >= 3.10; run: make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

# Your own copy of the notebooks in $(LAB_DIR)/ (made once, never overwritten; ignored by git),
# then JupyterLab on it; as root it adds --allow-root, without a display --no-browser.
# More JupyterLab options: make lab LAB_ARGS='--port 9999 --ip 0.0.0.0'
lab: $(VENV)/.installed
	$(BIN)/python -m iokit.app.launch --into $(LAB_DIR) $(LAB_ARGS)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	IOKIT_SCALE=tiny IOKIT_PROGRESS=0 $(BIN)/python -m pytest --nbval --nbval-current-env \
		--nbval-sanitize-with notebooks/sanitize.cfg $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

check: $(VENV)/.installed
	$(BIN)/iokit check

# Everything the kit made: the environment, all of data/ but its README (corpora, converted
# copies, shards), reports, build files and caches. Never $(LAB_DIR)/: your notebooks stay.
clean:
	rm -rf $(VENV) reports build *.egg-info .hypothesis .ruff_cache .pytest_cache
	find data -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	find . -path ./$(LAB_DIR) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) \
		-type d -prune -exec rm -rf {} +
	@if [ -n "$$IOKIT_DATA" ]; then echo "left alone: IOKIT_DATA=$$IOKIT_DATA (remove what you no longer need there)"; fi
