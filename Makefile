# lfakit: `make run` runs every experiment notebook on its embedded default data (smoke profile)
# into results/ and builds the report (results/site/index.html); `make test` runs the whole test suite (unit tests, papermill smoke runs, nbval).
# Both create the virtual environment .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PROFILE ?= smoke
NBVAL  := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: install run test test-fast notebooks bench gpu-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Then the static HTML report of every run under the results folder (lfakit report), built
# even when a run failed; make's exit status is still run-all's.
run: $(STAMP)
	status=0; $(BIN)/lfakit run-all --profile $(PROFILE) || status=$$?; \
	$(BIN)/lfakit report || status=$$?; \
	exit $$status

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile tests notebooks $(NBVAL)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile tests -m "not slow"

# Write each notebook's parameters cell from its schema, then re-execute the committed notebooks
# with those defaults (the smoke profile), keeping the outputs.
notebooks: $(STAMP)
	$(BIN)/python tools/sync_parameters.py
	LFAKIT_PROGRESS=text LFAKIT_RESULTS=$$(mktemp -d) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=1800 notebooks/*.ipynb

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# One prepared GPU check (<= 8 minutes on one GPU; docs/performance.md, "GPU check"): DenseNet-121
# images/s against timm's figure, the loader beside it, every paper profile's rehearsal on CUDA,
# DDP over NCCL with two GPUs. Without a GPU it says so and exits 0.
gpu-check: $(STAMP)
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) .pytest_cache
