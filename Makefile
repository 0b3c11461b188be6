# The two commands of the README. Both are idempotent: the venv is rebuilt only when
# pyproject.toml changes. torch==2.13.0 is installed before anything that depends on it.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install

install: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/zoo-audit demo

test: $(STAMP)
	$(PY) -m pytest -q
