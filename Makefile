# dfa: audio deepfake detection. `make` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
KERNEL ?= dfa
PROFILE ?= default
DATA_DIR ?= data
RUNS_DIR ?= runs
DATASET ?=
STUDY ?= lcnn-specaugment
SEEDS ?=
SEED ?=
comma := ,
LOCK := .setup/requirements.lock
APT_LIST := .setup/debian-packages.txt
APT_PACKAGES := $(shell grep -v '^\#' $(APT_LIST) | grep -v '^$$')
# open-jtalk and its HTS voice are in Debian contrib, which a default install does not enable.
CONTRIB_SOURCES := /etc/apt/sources.list.d/dfa-contrib.sources
SETUP_STAMP := $(VENV)/.dfa-setup
FARGAN := $(BIN)/fargan_demo
export HF_HUB_OFFLINE ?= 1
export PYTHONHASHSEED ?= 0

.PHONY: help setup system-deps test test-fast test-gpu lint format data reports headline headline-seeds bench ablation app lock clean distclean

## Show this list of targets
help:
	@awk 'BEGIN {FS = ":.*"} /^## / {doc = substr($$0, 4); next} \
	     /^[a-zA-Z_-]+:/ && doc {printf "  %-12s %s\n", $$1, doc} {doc = ""}' $(MAKEFILE_LIST)
	@echo "  Variables: PROFILE=default|smoke|reference  DATASET=offline|for-2sec|asvspoof2019-la|asvspoof2021-la|asvspoof2021-df|asvspoof5|in-the-wild|mlaad|<folder>|<csv>  DATA_DIR=$(DATA_DIR)"

## Install Debian packages (root + apt-get) and the pinned Python environment in .venv
setup: system-deps $(SETUP_STAMP) $(FARGAN)

## Install the Debian packages listed in .setup/debian-packages.txt (idempotent)
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian packages:" $$missing; \
	  [ -f $(CONTRIB_SOURCES) ] || printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: contrib\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' > $(CONTRIB_SOURCES); \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
	  echo "Missing system packages. Enable Debian contrib (write $(CONTRIB_SOURCES) as this target does), then run:"; echo "  sudo apt-get update && sudo apt-get install -y $$missing"; exit 1; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel

$(SETUP_STAMP): $(LOCK) pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (dfa)" >/dev/null
	touch $@

# FARGAN, the Opus 1.5 neural vocoder of the corpus, compiled from Debian's opus source.
$(FARGAN): dfa_lib/data/corpus/fargan.py | $(SETUP_STAMP)
	$(BIN)/python -m dfa_lib.data.corpus install-fargan --prefix $(VENV)

## Resolve .setup/requirements.in into the pinned lock file
lock: | $(BIN)/python
	$(BIN)/pip install -q -r .setup/requirements.in
	(echo "# Pinned environment installed by \`make setup\`; regenerate with \`make lock\` after editing requirements.in."; \
	 $(BIN)/pip freeze --exclude-editable | grep -v '^dfa-lib') > $(LOCK)

## Run the whole test suite (everything but GPU tests)
test: setup
	$(BIN)/python -m pytest -q

## Run the fast tests only (no slow or notebook tests)
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not notebooks and not gpu"

## Run the GPU tests (CUDA training, front ends, encoders, heads; skipped without a GPU)
test-gpu: setup
	$(BIN)/python -m pytest -q -m gpu tests/test_gpu.py tests/test_hf_finetune.py

## Check code and notebooks: ruff, layers (import-linter), dead code (vulture), dependencies (deptry), no outputs
lint: setup
	$(BIN)/ruff check dfa_lib tests notebooks
	$(BIN)/lint-imports
	$(BIN)/ruff format --check dfa_lib tests notebooks
	$(BIN)/nbstripout --verify notebooks/*.ipynb
	$(BIN)/python -m pytest -q tests/test_dead_code.py
	$(BIN)/deptry .

## Format code and strip notebook outputs
format: setup
	$(BIN)/ruff format dfa_lib tests notebooks
	$(BIN)/ruff check --fix dfa_lib tests notebooks
	$(BIN)/nbstripout notebooks/*.ipynb

## Build the offline corpus and its cross-source set under DATA_DIR (idempotent)
data: setup
	$(BIN)/python -m dfa_lib.data.corpus build --root $(DATA_DIR) $(if $(filter smoke,$(PROFILE)),--smoke,)

## Build data, run the notebooks with papermill and render reports/*.html (PROFILE=default|smoke|reference)
reports: setup
	$(BIN)/python -m dfa_lib.reporting.runner --profile $(PROFILE) --kernel $(KERNEL) \
	  --data-dir $(DATA_DIR) --runs-dir $(RUNS_DIR) $(if $(DATASET),--dataset $(DATASET),) \
	  $(if $(SEED),--seed $(SEED),)

## Write docs/results/headline.csv and the README's headline table from the default run's folders
headline: setup
	$(BIN)/python -m dfa_lib.reporting.headline --runs-dir $(RUNS_DIR)/default/offline --csv docs/results/headline.csv --readme README.md

## Sum up the default run over seeds (after `make reports SEED=N` for each N of SEEDS=1,2,...): mean EER, 95 % interval
headline-seeds: setup
	$(BIN)/python -m dfa_lib.reporting.headline --seed-runs $(RUNS_DIR)/default/offline \
	  $(foreach s,$(subst $(comma), ,$(SEEDS)),$(RUNS_DIR)/default-seed-$(s)/offline) \
	  --seeds-csv docs/results/headline_seeds.csv

## Measure the speed of every stage into reports/bench.html and reports/bench.json
bench: setup
	$(BIN)/python -m dfa_lib.studies.bench --data-dir $(DATA_DIR) --runs-dir $(RUNS_DIR) --out reports

## Train and test the variants of one design choice into reports/ablation_STUDY.md (STUDY=..., SEEDS=0,1,2)
ablation: data
	$(BIN)/python -m dfa_lib.studies.ablation $(STUDY) --data-dir $(DATA_DIR) --runs-dir $(RUNS_DIR)/ablation --out reports $(if $(SEEDS),--seeds $(SEEDS))

APP_ADDRESS ?= 127.0.0.1
## Start the Streamlit app on the detectors in RUNS_DIR, on 127.0.0.1 (APP_ADDRESS=0.0.0.0 exposes it, with no login)
app: setup
	MALLOC_ARENA_MAX=2 DFA_RUNS_DIR=$(RUNS_DIR) $(BIN)/streamlit run dfa_lib/app/streamlit_app.py \
	  --server.address $(APP_ADDRESS) --server.maxUploadSize 200 --server.headless true \
	  --browser.gatherUsageStats false

## Remove rendered reports, trained runs and caches (keeps data and .venv)
clean:
	rm -rf $(RUNS_DIR) reports/*.html reports/*.json reports/executed .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

## Also remove the built data and the virtual environment
distclean: clean
	rm -rf $(DATA_DIR) $(VENV)
