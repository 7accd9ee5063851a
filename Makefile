# nctls: build, demo, tests, benchmarks. `make demo` and `make test` need only
# cargo and openssl on the machine (`.ci/run` installs the test peers on Debian).

CARGO ?= cargo
DEMO_DIR ?= target/demo

.PHONY: all build demo certs test lint bench bench-quick clean

all: build

build:
	$(CARGO) build --release --bin nctls --examples

# Demo PKI with the GnuTLS demo's file names (x509-ca.pem, x509-server.pem, ...).
certs:
	certs/make-certs.sh $(DEMO_DIR)

# ConfD emulator + nctls + two clients: the second kills the first, whose
# TLS session must end with a clean close_notify.
demo: build certs
	scripts/demo.sh $(DEMO_DIR)

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

test: lint
	$(CARGO) test

# Side by side with hitch, stunnel and socat (installed from Debian when
# missing; needs root for that, two CPUs, ~15 minutes). Not part of `test`.
bench:
	bench/run.sh

# The same with small counts and one repeat (~2 minutes), for trying changes.
bench-quick:
	bench/run.sh --quick

clean:
	$(CARGO) clean
