# Every target sets itself up: it creates .venv and installs the package (with test extras) when
# .venv is missing or pyproject.toml is newer than the last install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SPEC ?= sweeps/default.toml
OUT ?= results

.PHONY: venv test test-slow lint sweep bench paper paper-cpu clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Two worker processes: much of the suite is XLA compiling, one core at a time, so two workers
# keep both of CI's cores busy (the suite's wall time falls by about a quarter).
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# ruff, and the import contract of pyproject.toml (a stage imports only earlier stages).
lint: $(STAMP)
	$(BIN)/ruff check w2sjax tests scripts
	$(BIN)/ruff format --check w2sjax tests scripts
	$(BIN)/lint-imports --no-cache --no-logo

sweep: $(STAMP)
	$(BIN)/w2sjax sweep $(SPEC) --out $(OUT)

# torch is only the bench's PyTorch column: installed here when it can be, skipped when not.
bench: $(STAMP)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[bench]' \
		>/dev/null 2>&1 || echo "w2sjax: torch did not install; the bench runs without its PyTorch column"
	$(BIN)/w2sjax bench --out results/bench

# The paper's table and both phase diagrams, then their reports (on whatever device is present;
# the GPU presets take minutes on an H200, hours on a CPU). paper-cpu: the CPU-sized presets.
# The tables take the default noise sampler (reduced at their d >> n_st); the phase grids
# --noise full, the sampler results/reference/cpu was made with, so they reproduce it run for run.
# --pad off: a program per n_st, as the reference outputs were made (padding would move their
# numbers by float round-off; docs/ENGINE.md).
run_report = $(BIN)/w2sjax sweep sweeps/paper/$(1).toml --out $(OUT) --pad off $(2) && $(BIN)/w2sjax report $(OUT)/$(1)
paper: $(STAMP)
	$(call run_report,paper_table,)
	for s in phase_np phase_nsigma; do $(call run_report,$$s,--noise full) || exit 1; done

paper-cpu: $(STAMP)
	$(call run_report,paper_table_cpu,)
	for s in phase_np_cpu phase_nsigma_cpu; do $(call run_report,$$s,--noise full) || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
