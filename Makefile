# `make demo` and `make test` create .venv when it is missing: torch 2.13.0 first (the CPU wheel; a looser pin
# pulls GBs of CUDA), then the project in editable mode with its dev extra.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test venv clean

$(BIN)/fgnas-profile: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .[dev]
	touch $@

venv: $(BIN)/fgnas-profile

test: venv
	$(BIN)/python -m pytest -q

demo: venv
	$(BIN)/fgnas-profile --device host --space quick --out device_tables/demo-host.json
	$(BIN)/fgnas-table show device_tables/demo-host.json
	$(BIN)/fgnas-search --latency-table device_tables/demo-host.json --target 0.1ms --backbone digits --data digits \
		--search-space kernels --epochs-pretrain 6 --epochs-search 8 --epochs-finetune 4 --batch-size 64 --quiet \
		--out runs/demo-$$(date +%Y%m%d-%H%M%S)

clean:
	rm -rf $(VENV) .cache
