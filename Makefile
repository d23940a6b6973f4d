# Two commands set up everything on a fresh machine (see README.md):
#   make demo   - create .venv if missing, synthesise facades, train the quickstart recipe
#   make test   - create .venv if missing, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv

venv: $(VENV)/.installed

# torch/torchvision are pinned: these exact builds install from the local disk in about 2 minutes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -e '.[dev]' torch==2.14.1 torchvision==0.29.1
	touch $@

demo: venv
	$(BIN)/tkit data synth-facades data/synth_facades --count 160 --size 64 --overwrite
	$(BIN)/tkit train recipes/quickstart.toml --overwrite
	@echo "Open runs/quickstart/index.html to see the results."

test: venv
	$(BIN)/python -m pytest -q
