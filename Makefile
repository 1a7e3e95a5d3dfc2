# The kit's two commands: `make lab` opens the notebooks, `make test` checks everything.
# Both create the virtual environment in .venv on first use (only Python >= 3.10 is needed).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,bpe,dask,s3,profile,spacy,spark
LAB_DIR ?= my-notebooks
LAB_ARGS ?=
WHEELHOUSE ?= wheelhouse
SPEC := .$(if $(EXTRAS),[$(EXTRAS)])
# With wheels in $(WHEELHOUSE)/ (make wheelhouse), the environment is installed from them alone,
# without any network; otherwise from PyPI.
PIP_FROM := $(if $(wildcard $(WHEELHOUSE)/*.whl),--no-index --find-links $(WHEELHOUSE))

.PHONY: lab test lint check clean wheelhouse

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "iokit needs Python >= 3.10; run: make PYTHON=python3.11 ...")'
	$(if $(PIP_FROM),@echo "installing offline: from the wheels in $(WHEELHOUSE)/ only")
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade $(PIP_FROM) pip
	$(BIN)/python -m pip install --quiet $(PIP_FROM) -e "$(SPEC)"
	@touch $@

# A classroom without internet: the wheel of every package the kit needs (with EXTRAS), built
# for this platform and this Python, plus the build tools an offline install of the kit needs
# (setuptools). Copy the kit with its $(WHEELHOUSE)/ folder to each machine (same OS, CPU and
# Python version): make lab / make test there install from it alone. Uses the pip of the kit's
# environment when there is one, else $(PYTHON)'s.
WHEEL_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
wheelhouse:
	$(WHEEL_PYTHON) -m pip wheel --quiet --wheel-dir $(WHEELHOUSE) "$(SPEC)" "setuptools>=77" wheel pip
	rm -f $(WHEELHOUSE)/iokit-*.whl
	@echo "$(WHEELHOUSE)/: $$(ls $(WHEELHOUSE)/*.whl | wc -l) wheels, $$(du -sh $(WHEELHOUSE) | cut -f1)B, for $$($(WHEEL_PYTHON) -c 'import sys, sysconfig; print(sysconfig.get_platform(), "Python", sys.version.split()[0])')"

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
# copies, shards), reports, build files and caches. Never $(LAB_DIR)/: your notebooks stay, and
# never $(WHEELHOUSE)/ (an offline classroom's packages: remove it yourself).
clean:
	rm -rf $(VENV) reports build *.egg-info .hypothesis .ruff_cache .pytest_cache
	find data -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
	find . -path ./$(LAB_DIR) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) \
		-type d -prune -exec rm -rf {} +
	@if [ -n "$$IOKIT_DATA" ]; then echo "left alone: IOKIT_DATA=$$IOKIT_DATA (remove what you no longer need there)"; fi
