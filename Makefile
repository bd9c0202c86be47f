# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# The CPU wheel of torch must be installed before anything that depends on torch: a plain
# `torch` requirement would pull a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo demo-model test test-all lint browser clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/ocrnet run

# Reproduces the shipped demo model (about 3.5 hours on a 2-core CPU); see its model card.
# Stage 1 trains from scratch in fp32; stages 2 and 3 fine-tune with bf16 autocast (about 2x
# faster per iteration on AVX-512 BF16 CPUs), each with a fresh poly schedule (stage 3 also a new
# data-order seed).
DEMO_TRAIN := OMP_WAIT_POLICY=PASSIVE $(BIN)/ocrnet train --data-root data/synth
DEMO_BATCHES := --batch-size 6 --crop 192x256 --scale 512x256 --ratio 0.5 1.25 \
	--checkpoint-interval 25 --val-limit 30
DEMO_FINETUNE := --amp bf16 --warmup-iters 20 --threads 2 $(DEMO_BATCHES)
demo-model: setup
	$(BIN)/ocrnet synth --out data/synth --train 1500 --val 100 --size 256x512 --seed 0
	$(DEMO_TRAIN) --out-dir runs/demo_train --variant hr18 --iters 900 --optimizer adamw \
		--lr 2e-3 --warmup-iters 30 --val-interval 150 --seed 0 $(DEMO_BATCHES)
	$(DEMO_TRAIN) --out-dir runs/demo_finetune --init runs/demo_train/final.pth --iters 1500 \
		--lr 1.5e-3 --val-interval 250 --seed 0 $(DEMO_FINETUNE)
	$(DEMO_TRAIN) --out-dir runs/demo_finetune2 --init runs/demo_finetune/final.pth --iters 2400 \
		--lr 1e-3 --val-interval 400 --seed 1 $(DEMO_FINETUNE)
	$(BIN)/python tools/pack_demo_model.py runs/demo_finetune2/final.pth --data-root data/synth \
		--train-command "make demo-model"

lint: setup
	$(BIN)/ruff check src tests benchmarks tools

# The page's browser test needs chromium: apt-installed where missing and possible, never failing
# the build (without it that test skips and says why).
browser:
	sh tools/install_browser.sh

# The suite runs in a loopback-only network namespace where the machine allows one: servers and
# Ray instances started by tests can then reach nothing but 127.0.0.1. It runs on TEST_WORKERS
# pytest-xdist workers (2: the 2-core CI machine; more cost memory, each holds torch and the
# engines): a worker takes whole files, the Ray files share one, and built artifacts are shared
# (tests/_engine_helpers.py). TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: lint browser
	sh tools/loopback_only.sh $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

test-all: lint browser
	sh tools/loopback_only.sh $(BIN)/pytest -m 'not gpu'

clean:
	rm -rf $(VENV) runs build *.egg-info
