# The few commands a contributor needs. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup browser console demo demo-cloud test test-busy lint bench package lock validate init-tables clean

setup: $(STAMP)

# constraints.txt (the function packages' lock) holds the runtime dependencies, transitive ones too, at the
# versions the packages ship: the virtualenv, and so CI, tests those.
$(STAMP): pyproject.toml requirements.txt requirements-dev.txt constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt -e .
	touch $(STAMP)

demo: setup  ## the main job on loopback: local CAMS, sample CSV, progress, summary, report
	env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy \
	    ALIBABA_CLOUD_ECS_METADATA_DISABLED=true $(BIN)/chatapp-mass demo

demo-cloud: setup  ## the deployed path on the local cloud: OSS upload -> ingest -> senders (local FC from s.yaml)
	env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy \
	    ALIBABA_CLOUD_ECS_METADATA_DISABLED=true $(BIN)/chatapp-mass demo --cloud

console: setup  ## the web console on the whole local cloud: prints its URL and the token to sign in with (Ctrl-C stops it)
	env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy \
	    ALIBABA_CLOUD_ECS_METADATA_DISABLED=true $(BIN)/chatapp-mass local-cloud --data cloud-data --env-file cloud.env

browser:  ## Debian's chromium + chromedriver for the browser test (it is skipped, saying why, where they cannot be installed)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	    { echo "make: installing chromium and chromium-driver with apt, for the browser test (about a minute)" >&2; \
	      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
	      >/dev/null 2>&1 || echo "make: chromium could not be installed (needs root and apt): the browser test will be skipped" >&2; }

# pytest-xdist workers for make test: two more than the machine's CPUs, at most 4 (the suite waits much of its
# time on loopback servers, subprocesses and rate limits, so extra workers fill a 2-CPU machine's idle time: on 2
# CPUs, 3 workers took 12 min 6 s and 4 took 9 min 50 s for the same 1,741 tests; each fault scenario runs a whole
# local cloud, so more than 4 would crowd a laptop). TEST_WORKERS=1 for one.
TEST_WORKERS ?= $(shell n=$$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2); n=$$((n + 2)); [ $$n -gt 4 ] && n=4; echo $$n)

test: setup browser  ## the whole suite (what CI runs): ~1,740 tests on TEST_WORKERS workers, about 10 min on 2 CPUs, a line per finished file
	@echo "make test: the whole suite on $(TEST_WORKERS) workers, about 10 minutes on a 2-CPU machine (longer beside other work); a line per test file as it finishes" >&2
	env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy \
	    ALIBABA_CLOUD_ECS_METADATA_DISABLED=true $(BIN)/python -m pytest -o addopts=-ra \
	    -n $(TEST_WORKERS) --dist worksteal --durations=25

test-busy:  ## make test twice with two CPU-bound processes beside it (the busy-laptop check; 30-40 min)
	bash .ci/busy-check

lint: setup  ## ruff (rules in pyproject.toml), the formatter's check, mypy strict on the package; CI runs it before the tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup  ## figures for the notes (never assertions)
	env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy \
	    ALIBABA_CLOUD_ECS_METADATA_DISABLED=true sh -c 'for b in bench/bench_*.py; do $(BIN)/python $$b; done'

package: setup  ## FC code packages build/<function> (FUNCTIONS="ingest sender", default all); s deploy runs it too
	$(BIN)/python -m chatapp_mass.deploy.packaging $(FUNCTIONS) --out build

lock:  ## rewrite constraints.txt: every distribution the FC packages ship, resolved for python3.12 on manylinux2014_x86_64 (RUNTIME=python3.10 for another)
	cd shared && $(PYTHON) -m chatapp_mass.deploy.packaging --lock --root .. $(if $(RUNTIME),--runtime $(RUNTIME))

validate: setup  ## check s.yaml offline, stricter than `s verify` (ACCOUNT_ID=... else a placeholder)
	$(BIN)/python -m chatapp_mass.deploy.validate s.yaml $(if $(ACCOUNT_ID),--account-id $(ACCOUNT_ID))

init-tables: setup  ## deploy step: the Tablestore tables, created if missing and ready (INSTANCE=... else $$CHATAPP_TABLESTORE_INSTANCE or chatapp-mass)
	$(BIN)/chatapp-mass init-tables --store tablestore://$(or $(INSTANCE),$(CHATAPP_TABLESTORE_INSTANCE),chatapp-mass)

clean:
	rm -rf $(VENV) demo-out build .pytest_cache .hypothesis .mypy_cache .ruff_cache
