# The two commands a newcomer needs: `make demo` and `make test`. Both install into .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-all benchmark epoch-time gpu-wheels clean

install: $(STAMP)

# Re-install when the package metadata changes. A plain `pip install nnunetv2` pulls the CUDA build of
# torch from PyPI (several GB, ~2-4 min on a fresh machine); it runs on CPU-only machines as well.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $(STAMP)

demo: install
	$(BIN)/nnunet-rc demo

# Two workers (pytest-xdist); tests of one file stay on one worker, the preprocessed fixture datasets
# are built once per session and shared.
PYTEST_PARALLEL ?= -n 2 --dist loadfile

test: install
	$(BIN)/python -m pytest $(PYTEST_PARALLEL)

test-all: install
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "slow or not slow"

benchmark: install
	$(BIN)/python benchmarks/augment_overhead.py

# Epoch time of every trainer against the baseline through the real nnUNetv2_train (tiny CPU setting;
# on a GPU: .venv/bin/python benchmarks/epoch_time.py --device cuda).
epoch-time: install
	$(BIN)/python benchmarks/epoch_time.py --device cpu --dims 2,3 --epochs 3 --iterations 3 --out epoch_time_out

# Wheels for the GPU machine (Python 3.12, no network): what its image lacks, in folders that fit one device
# call each (benchmarks/gpu_wheels.py; then benchmarks/gpu_check.py there, see the README's GPU section).
GPU_PYTHON ?= 3.12
gpu-wheels: install
	$(BIN)/python benchmarks/gpu_wheels.py --out gpu_wheels --python-version $(GPU_PYTHON)

clean:
	rm -rf $(VENV) build *.egg-info
