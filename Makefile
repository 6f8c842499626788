# esparse — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install lock run test test-full test-slow lint tables figures verify verify-ci reproduce-local gpu-check clean

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml scripts/install.sh requirements.lock
	bash scripts/install.sh

install: $(VENV)/.installed ## create .venv and install exactly requirements.lock + esparse (CPU torch on CPU hosts)

lock: install ## re-resolve the whole stack on purpose -> requirements.lock (then make install; re-make moved records)
	bash scripts/lock.sh

run: install ## set up and run the embedded default: SmolLM2-135M, esparse 2:4, prune -> eval (ARGS=... for overrides)
	$(PY) run.py $(ARGS)

test: install ## fast test suite (not slow)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

test-full: install ## every test, including slow end-to-end runs on the real embedded model
	$(PY) -m pytest -q $(ARGS)

test-slow: install ## only the slow tests (kill-and-resume sweep, notebook, real-model runs; ~7 min); CI runs them after make test
	$(PY) -m pytest -q -m slow $(ARGS)

lint: install ## ruff check + format check (notebooks included)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# the channel-permutation grid of the embedded default (+experiment=shuffles_local): score × shuffle per
# pattern; a cell whose records disagree is reported (narrow with --where) without failing the other tables
SHUFFLE_GRID = --where model=smollm2_135m --where calibration=bundled_wiki --where nsamples=32 \
	--where metric=wanda,ria,esparse --where metric_alpha=auto --where metric_a=0.5 --where reconstruct=False \
	--where tie_break=low_index

tables: install ## every paper table (and runs.md, drift.md) from results/{runs,reference/runs}/*.json -> results/tables/
	$(PY) -m analysis drift --results results --out results/tables/drift.md | grep -E 'DRIFT|within' || true
	$(PY) -m analysis tables --results results --out results/tables
	$(PY) -m analysis runs --results results --out results/tables > /dev/null
	$(PY) -m analysis headline --results results --out results/tables/headline.md > /dev/null
	-$(PY) -m analysis grid --results results --out results/tables/shuffle_grid.md $(SHUFFLE_GRID) > /dev/null

figures: install ## observation figures -> results/figures/
	$(PY) -m analysis figures --results results --out results/figures

# reference configs make verify re-runs, one run's overrides per quoted string ("" = the default run)
VERIFY_CI = "+experiment=ci_reference"
VERIFY ?= $(VERIFY_CI) ""
verify: install ## re-run reference configs (VERIFY=..., default: ci_reference + the default run, ~4.5 min) and fail on drift
	bash scripts/verify.sh $(VERIFY)

verify-ci: install ## re-run the reduced-size CI reference (~1 min) and fail on drift; CI runs it
	bash scripts/verify.sh $(VERIFY_CI)

LOCAL_PRESETS ?= $(sort $(basename $(notdir $(wildcard conf/experiment/*_local.yaml))))
reproduce-local: install ## every *_local preset on the CPU (paper tables ~7 h, the results page's seed sweeps ~6 h more, idle), then tables + figures
	@failed=""; for p in $(LOCAL_PRESETS); do \
		echo "== $$p"; $(PY) run.py -m +experiment=$$p $(ARGS) || failed="$$failed $$p"; \
	done; \
	$(MAKE) --no-print-directory tables figures; \
	if [ -n "$$failed" ]; then echo "presets with failed runs:$$failed (their records say why; rerun to resume)"; exit 1; fi

gpu-check: install ## on a CUDA machine: 2:4 GEMM at LLaMA-7B/13B shapes, device vs CPU masks -> results/bench/ (ARGS=--dry-run: the CPU path)
	$(PY) scripts/gpu_check.py $(ARGS)

clean: ## remove caches and outputs (keeps results/ records)
	rm -rf outputs multirun .pytest_cache .ruff_cache
