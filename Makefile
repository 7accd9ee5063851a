# nctls: build, demo, tests, benchmarks, and the C library (libnctls).
# `make demo` needs only cargo and openssl; `make test` also needs a C
# compiler, valgrind, pkg-config and cbindgen (`.ci/run` installs them all on
# Debian); `make bench` installs its peers (stunnel4, hitch, socat) itself.

CARGO ?= cargo
CC ?= cc
# Where cargo builds (CARGO_TARGET_DIR, build.target-dir, or ./target), asked
# of cargo once; exported so every cargo call and script below agrees.
TARGET_DIR := $(shell CARGO='$(CARGO)' scripts/target-dir.sh)
ifeq ($(TARGET_DIR),)
$(error cannot ask cargo where it builds (scripts/target-dir.sh))
endif
export CARGO_TARGET_DIR := $(TARGET_DIR)
DEMO_DIR ?= $(TARGET_DIR)/demo
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR ?= $(PREFIX)/share/man

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR := $(firstword $(subst ., ,$(VERSION)))
# cbindgen is a tool, not a dependency; point releases change its output.
CBINDGEN ?= $(shell command -v cbindgen 2>/dev/null || echo $${CARGO_HOME:-$$HOME/.cargo}/bin/cbindgen)
CBINDGEN_VERSION := 0.29.4
# What a program linking libnctls.a statically also needs (rustc
# --print native-static-libs); nctls.pc's Libs.private.
NATIVE_STATIC_LIBS := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
PYTHON ?= python3
VENV := $(TARGET_DIR)/venv
LN2_CLIENT := $(TARGET_DIR)/interop/ln2-client
# PyPI NETCONF clients for tests/netconf.rs, pinned: stock ncclient 0.7.x is
# the one with bug #651 that --max-record's default works around. logfmtkv
# (go-logfmt's rules) parses the session log lines in tests/logs.rs.
PY_CLIENTS := ncclient==0.7.1 netconf-client==3.6.0 netconf-console2==3.0.1 six==1.17.0 \
	logfmtkv==0.2.1

DIST := $(TARGET_DIR)/dist
# The libraries' profile: release (opt-level "s", ring at 3, LTO) but unwinding.
LIB_PROFILE ?= lib
CBUILD := $(TARGET_DIR)/c
# No feature macros here: each C file defines what it needs, so the
# README's plain `cc` command builds it as warning-free as this does.
CWARN := -std=c11 -Wall -Wextra -Werror
ASAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	--suppressions=$(CURDIR)/tests/c/valgrind.supp

C_PROGRAMS := tls-subsys embed test-api
C_BINS := $(addprefix $(CBUILD)/,$(C_PROGRAMS)) $(addprefix $(CBUILD)/asan/,$(C_PROGRAMS))

.PHONY: all build lib man header check-header cbindgen check-symbols c-examples c-test \
	demo certs test fresh-clone-test lint install clean venv interop-clients bench bench-quick fuzz

all: build lib c-examples

# Cargo features of the daemon: the default build has the Landlock sandbox;
# `make build FEATURES=pkcs11` (or `make install FEATURES=pkcs11`) adds
# PKCS#11 keys. README's Builds section gives what each weighs.
FEATURES ?=
CARGO_FEATURES := $(if $(FEATURES),--features $(FEATURES))

build:
	$(CARGO) build --release --bin nctls --examples $(CARGO_FEATURES)

# libnctls.so and libnctls.a, from the C API crate (capi/, an rlib for
# cargo): only here, each built alone so LTO applies, with the `lib` profile
# (panics unwind to the C boundary). The soname carries the major version
# (libnctls.so.0), so programs linked against it keep working across
# compatible updates. Copied out at once under the library's name: cargo
# names them after the crate (libnctls_capi) and reuses the output names.
lib: $(DIST)/libnctls.a $(DIST)/libnctls.so.$(VERSION)

LIB_SOURCES := Cargo.toml Cargo.lock capi/Cargo.toml $(shell find src capi/src -name '*.rs')
CAPI := $(CARGO) rustc -p nctls-capi --profile $(LIB_PROFILE) --lib

$(DIST)/libnctls.so.$(VERSION): $(LIB_SOURCES)
	@mkdir -p $(DIST)
	$(CAPI) --crate-type cdylib -- -C link-arg=-Wl,-soname,libnctls.so.$(MAJOR)
	cp $(TARGET_DIR)/$(LIB_PROFILE)/libnctls_capi.so $@
	ln -sf libnctls.so.$(VERSION) $(DIST)/libnctls.so.$(MAJOR)
	ln -sf libnctls.so.$(MAJOR) $(DIST)/libnctls.so

$(DIST)/libnctls.a: $(LIB_SOURCES)
	@mkdir -p $(DIST)
	$(CAPI) --crate-type staticlib
	cp $(TARGET_DIR)/$(LIB_PROFILE)/libnctls_capi.a $@

# nctls(8) and nctls.conf(5) from their scdoc sources (Debian: scdoc).
SCDOC ?= scdoc
MAN_PAGES := $(TARGET_DIR)/man/nctls.8 $(TARGET_DIR)/man/nctls.conf.5

man: $(MAN_PAGES)

$(TARGET_DIR)/man/%: man/%.scd
	@command -v $(SCDOC) >/dev/null || { echo "the man pages need scdoc: apt-get install -y scdoc (or run .ci/run)" >&2; exit 1; }
	@mkdir -p $(@D)
	$(SCDOC) <$< >$@.tmp
	mv $@.tmp $@

# The pinned cbindgen, installed with cargo when missing or another version.
cbindgen:
	@$(CBINDGEN) --version 2>/dev/null | grep -qx 'cbindgen $(CBINDGEN_VERSION)' || \
	    $(CARGO) install cbindgen --version $(CBINDGEN_VERSION) --locked

# Regenerates include/nctls.h from the C API crate (capi/src/).
header: cbindgen
	$(CBINDGEN) --config cbindgen.toml --output include/nctls.h --quiet capi

# Fails when the checked-in header differs from a fresh generation.
check-header: cbindgen
	@mkdir -p $(TARGET_DIR)
	$(CBINDGEN) --config cbindgen.toml --output $(TARGET_DIR)/nctls.h.fresh --quiet capi
	@diff -u include/nctls.h $(TARGET_DIR)/nctls.h.fresh || \
	    { echo "include/nctls.h is out of date: run 'make header'" >&2; exit 1; }
	@echo "header: include/nctls.h matches capi/src/"

# Every symbol the libraries export is declared in the header and vice versa.
check-symbols: lib
	tests/c/check-symbols.sh include/nctls.h $(DIST)/libnctls.so.$(VERSION) $(DIST)/libnctls.a

# The C programs, linked with libnctls.a, plain (run under valgrind) and
# with ASan/UBSan (run natively).
c-examples: $(C_BINS)

$(CBUILD)/%: c-example/%.c include/nctls.h $(DIST)/libnctls.a
	@mkdir -p $(@D)
	$(CC) $(CWARN) -O1 -g -Iinclude -o $@ $< $(DIST)/libnctls.a -pthread $(NATIVE_STATIC_LIBS)

$(CBUILD)/asan/%: c-example/%.c include/nctls.h $(DIST)/libnctls.a
	@mkdir -p $(@D)
	$(CC) $(CWARN) -O1 -g $(ASAN) -Iinclude -o $@ $< $(DIST)/libnctls.a -pthread $(NATIVE_STATIC_LIBS)

$(CBUILD)/test-api: tests/c/test-api.c include/nctls.h $(DIST)/libnctls.a
	@mkdir -p $(@D)
	$(CC) $(CWARN) -O1 -g -Iinclude -o $@ $< $(DIST)/libnctls.a -pthread $(NATIVE_STATIC_LIBS)

$(CBUILD)/asan/test-api: tests/c/test-api.c include/nctls.h $(DIST)/libnctls.a
	@mkdir -p $(@D)
	$(CC) $(CWARN) -O1 -g $(ASAN) -Iinclude -o $@ $< $(DIST)/libnctls.a -pthread $(NATIVE_STATIC_LIBS)

# The C tests: the API test and both examples against the ConfD emulator
# and real TLS clients, under valgrind and again built with ASan/UBSan; then
# an install into a staging directory built with pkg-config.
c-test: check-header check-symbols c-examples
	$(CARGO) build --release --examples
	tests/c/run.sh "$(VALGRIND)" $(CBUILD)
	ASAN_OPTIONS=detect_leaks=1 tests/c/run.sh "" $(CBUILD)/asan
	tests/c/install.sh

# Demo PKI with the GnuTLS demo's file names (x509-ca.pem, x509-server.pem, ...).
certs:
	certs/make-certs.sh $(DEMO_DIR)

# ConfD emulator + nctls + two clients: the second kills the first, whose
# TLS session must end with a clean close_notify.
demo: build certs
	scripts/demo.sh $(DEMO_DIR)

# Every build: default, minimal (no sandbox) and with PKCS#11 keys.
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --all-targets --no-default-features -- -D warnings
	$(CARGO) clippy --all-targets --features pkcs11 -- -D warnings

# Third-party NETCONF clients the interop tests drive (.ci/run installs
# python3-venv, libnetconf2-dev, libssh-dev, netconfd).
# The stamp names the package list, so a venv made before a change is completed.
VENV_STAMP := $(VENV)/.installed-$(firstword $(shell echo '$(PY_CLIENTS)' | md5sum))

venv: $(VENV_STAMP)

$(VENV_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check $(PY_CLIENTS)
	touch $@

interop-clients: venv $(LN2_CLIENT)

$(LN2_CLIENT): tests/interop/ln2-client.c
	@pkg-config --exists libnetconf2 libyang openssl || \
	  { echo "ln2-client needs libnetconf2-dev and libssh-dev: apt-get install -y libnetconf2-dev libssh-dev (or run .ci/run)"; exit 1; }
	mkdir -p $(dir $@)
	$(CC) -Wall -Wextra -Werror -O2 -o $@ $< $$(pkg-config --cflags --libs libnetconf2 libyang openssl)

# The PKCS#11 tests need the pkcs11 build (and SoftHSM2, opensc: .ci/run).
test: lint interop-clients
	$(CARGO) test
	$(CARGO) test --features pkcs11 --lib --test hsm
	$(MAKE) c-test
	$(MAKE) fresh-clone-test

# The Makefile from a fresh copy of the tree with CARGO_TARGET_DIR set:
# demo, two installs with two PREFIXes, no C library from `cargo build`.
fresh-clone-test:
	tests/make/fresh-clone.sh

# nctls.pc is written for this PREFIX on every install (never a copy made
# for an earlier one).
install: build lib man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	install -m 755 $(TARGET_DIR)/release/nctls $(DESTDIR)$(BINDIR)/nctls
	install -m 755 $(DIST)/libnctls.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libnctls.so.$(VERSION)
	ln -sf libnctls.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libnctls.so.$(MAJOR)
	ln -sf libnctls.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libnctls.so
	install -m 644 $(DIST)/libnctls.a $(DESTDIR)$(LIBDIR)/libnctls.a
	install -m 644 include/nctls.h $(DESTDIR)$(INCLUDEDIR)/nctls.h
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|; s|@NATIVE_STATIC_LIBS@|$(NATIVE_STATIC_LIBS)|' \
	    nctls.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/nctls.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/nctls.pc
	install -m 644 $(TARGET_DIR)/man/nctls.8 $(DESTDIR)$(MANDIR)/man8/nctls.8
	install -m 644 $(TARGET_DIR)/man/nctls.conf.5 $(DESTDIR)$(MANDIR)/man5/nctls.conf.5

# Every cargo-fuzz target (fuzz/) for FUZZ_SECONDS each, on nightly with
# cargo-fuzz (fuzz/README.md); prints executions, coverage and crashes. Not
# part of `test`, which replays the committed inputs on stable (tests/fuzz.rs).
FUZZ_SECONDS ?= 60

fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

# Side by side with hitch, stunnel and socat (installed from Debian when
# missing; needs root for that, two CPUs, ~15 minutes). Not part of `test`.
bench:
	bench/run.sh

# The same with small counts and one repeat (~2 minutes), for trying changes.
bench-quick:
	bench/run.sh --quick

clean:
	$(CARGO) clean
