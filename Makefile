# ordersaga — the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit check lock clean soak soak-short mutate

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

## demo: the original example, then 3000 generated orders at --fault-rate 0.1, then the audit
demo: $(STAMP)
	@rm -rf demo-data && mkdir -p demo-data
	@echo "== examples/seed.txt, the original two-line example, on a new data dir"
	$(BIN)/ordersaga run examples/seed.txt --data-dir demo-data/seed
	@echo
	@echo "== 3000 generated orders (contended items, declined cards, unserved countries,"
	@echo "== over-limit users, malformed lines) at --fault-rate 0.1; outcomes in demo-data/outcomes.txt"
	$(BIN)/ordersaga generate --orders 3000 --seed 7 > demo-data/orders.txt
	$(BIN)/ordersaga run demo-data/orders.txt --data-dir demo-data/store --concurrency 64 \
		--fault-rate 0.1 --seed 7 > demo-data/outcomes.txt 2> demo-data/run.log; \
		rc=$$?; grep -v '^line ' demo-data/run.log; [ $$rc -eq 0 ] || [ $$rc -eq 65 ]
	@echo "   (rejected and unreadable input lines: $$(grep -c '^line ' demo-data/run.log), see demo-data/run.log)"
	@echo "   first outcome lines:"; head -n 5 demo-data/outcomes.txt | sed 's/^/   /'
	@echo
	@echo "== the audit of every invariant across the saga log and the three service databases"
	$(BIN)/ordersaga audit --data-dir demo-data/store

## test: lint, types, and the whole test suite
test: $(STAMP) lint typecheck
	$(BIN)/pytest -n 2 -q

## soak: the full chaos soak (10,000 orders, fault rate 0.2, 20 SIGKILLs), audited and reported
soak: $(STAMP)
	$(BIN)/ordersaga chaos --orders 10000 --fault-rate 0.2 --kills 20 --seed 1

## soak-short: the CI-sized chaos soak (a few hundred orders, a few kills)
soak-short: $(STAMP)
	$(BIN)/ordersaga chaos --orders 300 --fault-rate 0.2 --kills 3 --seed 1

## mutate: mutation testing (mutmut) of the modules where a bug costs money, against the fast
## tests that cover them; prints killed / survived per module and each survivor. Not in CI (slow).
## MUTANTS='ordersaga.saga.executor*' limits it to some modules.
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py $(MUTANTS)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples tools
	$(BIN)/ruff format --check src tests examples tools

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict examples/trip_saga.py

## lock: re-pin every dependency (needs network access to PyPI)
lock:
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) demo-data ordersaga-data chaos-data mutants .mypy_cache .pytest_cache .ruff_cache
