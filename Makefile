# The two commands: `make run` (the platform) and `make test` (the suite). Each builds .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench lock worker migrate clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/marketplace serve --host $${HOST:-127.0.0.1} --port $${PORT:-8000}

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/gateway.py

worker: $(STAMP)
	$(BIN)/marketplace worker

migrate: $(STAMP)
	$(BIN)/marketplace migrate

# Re-pin every dependency (exact versions, no index URLs) after changing pyproject.toml.
lock:
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip freeze --exclude-editable --exclude marketplace | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) .marketplace .pytest_cache
