# CertGate: the two commands are `make demo` and `make test`; both work on a fresh Debian machine
# with nothing but Python 3.11+ and make (system packages come from apt-get, Python packages go
# into .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# System packages the product and its tests use. Only the missing ones are installed.
#   softhsm2, opensc      - the SoftHSM token that stands in for a USB key; pkcs11-tool
#   openssl               - `openssl ocsp`, the test PKI's OCSP responder
#   pcscd, libpcsclite-dev, swig - PC/SC reader events (pyscard builds from source)
#   vsmartcard-vpcd, vsmartcard-vpicc, python3-pycryptodome - a virtual reader and card (vicc)
#   libp11-kit-dev, gcc   - a PKCS#11 test module, compiled at test time, that counts PIN tries
#   libssl-dev            - the SM2 USB-key module (softhsm/sm2_ukey.c), built against libcrypto
#   nginx                 - the TLS-client-authentication reverse proxy in tests
#   chromium, fonts-noto-cjk - the real browser for the web tests (driven by Playwright)
SYSTEM_PACKAGES := softhsm2 opensc openssl pcscd libpcsclite-dev swig vsmartcard-vpcd \
	vsmartcard-vpicc python3-pycryptodome libp11-kit-dev gcc libssl-dev nginx chromium fonts-noto-cjk \
	postgresql redis-server

.PHONY: demo test bench lint typecheck system venv lock clean fuzz

system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing system packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

# The environment is rebuilt from scratch whenever the lock changes, so .venv holds exactly what
# the lock says (nothing left over from an earlier lock). Hashes are required for every file;
# the project itself and pyscard (a source distribution) are built with the locked setuptools,
# not with whatever a build-isolation environment would download.
UV_COMPILE = $(BIN)/uv pip compile --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" --quiet

$(STAMP): pyproject.toml requirements.txt requirements-tools.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements-tools.txt
	$(BIN)/python -m pip install -q --require-hashes --no-deps --no-build-isolation -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation --no-index -e .
	@echo "Installed. The commands (certgate, pytest, ...) are in $(VENV)/bin:"
	@echo "  source $(VENV)/bin/activate    # or: export PATH=\"$$PWD/$(VENV)/bin:\$$PATH\""
	touch $@

# Refresh the lock to the newest versions pyproject.toml allows (needs PyPI), then reinstall.
lock:
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && \
	  $(BIN)/python -m pip install -q --require-hashes --no-deps -r requirements-tools.txt; }
	$(UV_COMPILE) --upgrade --group pyproject.toml:tools -o requirements-tools.txt
	$(UV_COMPILE) --upgrade --all-extras pyproject.toml -o requirements.txt
	$(MAKE) venv

venv: system $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

test: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -W error

# A longer input campaign: the property-based tests of every JSON route of the gateway and the
# agent, with many more bodies than `make test` sends (set FUZZ_EXAMPLES to change it).
FUZZ_EXAMPLES ?= 20000
fuzz: venv
	CERTGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -W error -p no:cacheprovider -s \
	  tests/gateway/test_fuzz.py tests/admin/test_fuzz_console.py

bench: venv
	$(BIN)/python -m bench

demo: venv
	$(BIN)/python -m softhsm.demo

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
