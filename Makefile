# Two commands for a new user (README "Quick start"):
#   make demo   sets up .venv from requirements.lock, then runs one paper end to end (CatLIP: about
#               6 minutes on 2 cores from an empty cache) and prints where its report is
#   make test   the test suite (what CI runs: lint, then pytest)
# Any paper: `make demo PAPER=epsilon_scaling` (see `python -m common.status` for the expected times).
PAPER ?= catlip
PY := .venv/bin/python

.PHONY: setup demo test status

setup: .venv/.installed

.venv/.installed: requirements.lock pyproject.toml
	python3.11 -m venv .venv
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.lock
	$(PY) -m pip install --no-deps -e .
	touch $@

demo: setup
	. .venv/bin/activate && dvc repro papers/$(PAPER)/dvc.yaml
	@echo "report: reports/$(PAPER)/README.md   (all papers: reports/README.md; runs: mlflow ui --backend-store-uri sqlite:///mlflow.db)"

test: setup
	. .venv/bin/activate && ruff check . && python -m pytest

status: setup
	$(PY) -m common.status
