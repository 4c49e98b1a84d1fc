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

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

lint: $(STAMP)
	$(BIN)/ruff check w2sjax tests

sweep: $(STAMP)
	$(BIN)/w2sjax sweep $(SPEC) --out $(OUT)

bench: $(STAMP)
	$(BIN)/w2sjax bench --out results/bench

# The paper's table and both phase diagrams, then their reports (on whatever device is present;
# the GPU presets take minutes on an H200, hours on a CPU). paper-cpu: the CPU-sized presets.
# --noise full: the sampler results/reference was made with, so these reproduce it run for run
# (auto would take the reduced sampler at their smaller n_st: equal in law, other draws).
PAPER := paper_table phase_np phase_nsigma
paper: $(STAMP)
	for s in $(PAPER); do $(BIN)/w2sjax sweep sweeps/$$s.toml --out $(OUT) --noise full && \
	  $(BIN)/w2sjax report $(OUT)/$$s || exit 1; done

paper-cpu: $(STAMP)
	for s in $(PAPER:%=%_cpu); do $(BIN)/w2sjax sweep sweeps/$$s.toml --out $(OUT) --noise full && \
	  $(BIN)/w2sjax report $(OUT)/$$s || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
