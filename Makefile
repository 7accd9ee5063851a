# nctls: build, demo, tests. `make demo` and `make test` need only cargo and
# openssl on the machine (`.ci/run` installs the test peers on Debian).

CARGO ?= cargo
PYTHON ?= python3
DEMO_DIR ?= target/demo
VENV := target/venv
LN2_CLIENT := target/interop/ln2-client
# PyPI NETCONF clients for tests/netconf.rs, pinned: stock ncclient 0.7.x is
# the one with bug #651 that --max-record's default works around.
PY_CLIENTS := ncclient==0.7.1 netconf-client==3.6.0 netconf-console2==3.0.1 six==1.17.0

.PHONY: all build demo certs test lint clean venv interop-clients

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

# Third-party NETCONF clients the interop tests drive (.ci/run installs
# python3-venv, libnetconf2-dev, libssh-dev, netconfd).
venv: $(VENV)/.installed

$(VENV)/.installed:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PY_CLIENTS)
	touch $@

interop-clients: venv $(LN2_CLIENT)

$(LN2_CLIENT): tests/interop/ln2-client.c
	@pkg-config --exists libnetconf2 libyang openssl || \
	  { echo "ln2-client needs libnetconf2-dev and libssh-dev: apt-get install -y libnetconf2-dev libssh-dev (or run .ci/run)"; exit 1; }
	mkdir -p $(dir $@)
	$(CC) -Wall -Wextra -Werror -O2 -o $@ $< $$(pkg-config --cflags --libs libnetconf2 libyang openssl)

test: lint interop-clients
	$(CARGO) test

clean:
	$(CARGO) clean
