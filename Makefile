# `make demo` and `make test` create .venv when it is missing: torch 2.13.0 first (the CPU wheel; a looser pin
# pulls GBs of CUDA), then the project in editable mode with its dev extra.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint venv clean

$(BIN)/fgnas-profile: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .[dev]
	touch $@

venv: $(BIN)/fgnas-profile

# `make test` is the whole suite, after the linter (ruff, configured in pyproject.toml); `make test-fast` leaves out
# the tests marked slow (TF conversions, killed sweeps, exports, phone farms) for development.
lint: venv
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest -q

test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

# The whole pipeline on this computer with embedded defaults: profile (the quick space, its second pass 10 s after the
# first rather than a minute; re-running resumes, so a second demo reuses the measurements) -> search the digits CNN
# to 60% of its unpruned predicted latency -> export
# (TFLite + ONNX, parity, per-layer latency) -> fgnas-check against the search target as the budget -> summary.
DEMO_TABLE := device_tables/demo-host.json
DEMO_RUN := runs/demo
DEMO_SEARCH := --backbone digits --data digits --search-space kernels --target 60%latency \
	--epochs-pretrain 6 --epochs-search 8 --epochs-finetune 4 --batch-size 64 --quiet
READ_TARGET_MS := import json; print(json.load(open("$(DEMO_RUN)/arch.json"))["target"]["value"])

demo: venv
	$(BIN)/fgnas-profile --device host --space quick --pass-gap 10 --out $(DEMO_TABLE)
	$(BIN)/fgnas-table show $(DEMO_TABLE)
	rm -rf $(DEMO_RUN)
	$(BIN)/fgnas-search --latency-table $(DEMO_TABLE) $(DEMO_SEARCH) --out $(DEMO_RUN)
	$(BIN)/fgnas-export $(DEMO_RUN) --device host --table $(DEMO_TABLE)
	$(BIN)/fgnas-check $(DEMO_RUN)/export/model.tflite --device host \
		--budget $$($(BIN)/python -c '$(READ_TARGET_MS)')ms --json $(DEMO_RUN)/check.json; \
	status=$$?; $(BIN)/python -m export.summary $(DEMO_RUN) --check $(DEMO_RUN)/check.json && exit $$status

clean:
	rm -rf $(VENV) .cache
