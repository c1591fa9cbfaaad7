# The two commands of README.md: `make quickstart` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/quickstart
TORCH_WHEELS ?= /opt/wheels

.PHONY: install quickstart train-quickstart colorize-sample app test test-quick lint format clean

# uv installs the pinned set in seconds where pip takes minutes (parallel downloads, a cache).
# --compile-bytecode: uv writes no .pyc by default, and where PYTHONDONTWRITEBYTECODE is set
# (CI images) every process would compile TensorFlow and jax from source again (11 CPU-s
# instead of 5 to import them).
UV := $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -c requirements.lock

$(BIN)/.installed: setup.cfg requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$$(grep '^uv==' requirements.lock)"
	$(UV) -e '.[test,app]'
	# torch (CPU build) is only for the PyTorch parity tests and the speed peer.
	$(UV) --find-links $(TORCH_WHEELS) -e '.[parity]' \
		|| echo "torch 2.13.0+cpu is not installable here: the PyTorch parity tests will be skipped"
	touch $@

install: $(BIN)/.installed

# Train the quickstart config on the embedded samples, then colourise a sample clip.
quickstart: train-quickstart colorize-sample

train-quickstart: install
	$(BIN)/pix2pix-train --config configs/quickstart.py --workdir $(WORKDIR)

colorize-sample: install
	$(BIN)/pix2pix-make-sample runs/sample_clip.mp4 --overwrite
	$(BIN)/pix2pix-colorize --workdir $(WORKDIR) runs/sample_clip.mp4 \
		--output runs/sample_clip_colorized.mp4 --overwrite

# The colouring page (docs/app.md) on the quickstart hint model, trained first if missing.
HINTS_WORKDIR ?= runs/hints
APP_PORT ?= 7860

app: install $(HINTS_WORKDIR)/.trained
	$(BIN)/pix2pix-app --workdir $(HINTS_WORKDIR) --port $(APP_PORT)

$(HINTS_WORKDIR)/.trained: | install
	$(BIN)/pix2pix-train --config configs/quickstart_hints.py --workdir $(HINTS_WORKDIR)
	touch $@

test: install lint
	$(BIN)/python -m pytest -n 3 --dist loadfile --no-loadscope-reorder --durations=25

# The edit loop's tier: every module's logic, without the slow and process-starting tests.
test-quick: install lint
	$(BIN)/python -m pytest -n 3 -m "not slow and not integration" --durations=15

lint: install
	$(BIN)/ruff check pix2pix_jax configs experiments tests
	$(BIN)/ruff format --check pix2pix_jax configs experiments tests

format: install
	$(BIN)/ruff check --fix pix2pix_jax configs experiments tests
	$(BIN)/ruff format pix2pix_jax configs experiments tests

clean:
	rm -rf $(VENV) runs .pytest_cache
