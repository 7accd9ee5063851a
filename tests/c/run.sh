#!/usr/bin/env bash
# run.sh WRAPPER BUILD_DIR: the C tests, against the ConfD emulator and the
# nc-client TLS client (cargo's release examples, in cargo's target directory). WRAPPER is the valgrind
# command line, or "" for the ASan/UBSan builds. Every C program must exit 0
# and leave no valgrind error (definite leaks included).
set -euo pipefail

wrap=$1
build=$(cd "$2" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
ex=$("$root/scripts/target-dir.sh")/release/examples
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
passed=0
failed=0
label=${wrap:+valgrind}
label=${label:-asan}

ok() { echo "ok   [$label] $1"; passed=$((passed + 1)); }
bad() { echo "FAIL [$label] $1" >&2; failed=$((failed + 1)); }
check() { # NAME COMMAND...
    local name=$1; shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
wait_for() { # FILE PATTERN [SECS]
    local n=$(( ${3:-60} * 20 ))
    for _ in $(seq "$n"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2 || true
    return 1
}
port_of() { # FILE PATTERN-BEFORE-PORT
    sed -n "s/.*$2\([0-9][0-9]*\).*/\1/p" "$1" | head -n 1
}
client() { # OUT CERT PORT ARGS...
    local out=$1 cert=$2 port=$3; shift 3
    "$ex/nc-client" --connect "127.0.0.1:$port" --ca "$pki/x509-ca.pem" \
        --cert "$pki/$cert.pem" --key "$pki/$cert-key.pem" "$@" >"$out" 2>&1
}

pki=$work/pki
"$root/certs/make-certs.sh" "$pki" >/dev/null

"$ex/confd-emu" --listen 127.0.0.1:0 2>"$work/emu.log" &
pids+=($!)
"$ex/confd-emu" --listen 127.0.0.1:0 --get-size 50000000 2>"$work/emu-big.log" &
pids+=($!)
wait_for "$work/emu.log" "listening on"
wait_for "$work/emu-big.log" "listening on"
emu=127.0.0.1:$(port_of "$work/emu.log" "listening on 127.0.0.1:")
emu_big=127.0.0.1:$(port_of "$work/emu-big.log" "listening on 127.0.0.1:")

# --- the API -------------------------------------------------------------
if $wrap "$build/test-api" "$ex" "$pki" "$emu" "$emu_big" >"$work/test-api.log" 2>&1; then
    ok "test-api: $(tail -n 1 "$work/test-api.log")"
else
    bad "test-api"; cat "$work/test-api.log" >&2
fi

# --- tls-subsys: the GnuTLS demo's drop-in --------------------------------
(cd "$pki" && exec $wrap "$build/tls-subsys" -f -p 0 -b "$emu") >"$work/subsys.log" 2>&1 &
subsys=$!
pids+=($subsys)
wait_for "$work/subsys.log" "Server ready"
port=$(port_of "$work/subsys.log" "Listening to port '")

check "tls-subsys: a whole session (get, close-session) ends with close_notify" \
    client "$work/s1.out" client "$port" --get --close-session
grep -q "user=admin source=127.0.0.1/" "$work/emu.log" && ok "tls-subsys: the demo's header (admin)" \
    || bad "tls-subsys: the demo's header"

# Client A locks and waits; B (served while A is live) kills A's session:
# ConfD closes A's backend socket and A must see close_notify.
client "$work/a.out" client "$port" --lock --wait 60 &
a=$!
wait_for "$work/a.out" "lock:"
a_id=$(awk '/^session-id/ {print $2}' "$work/a.out")
check "tls-subsys: a second client is served while the first is live" \
    client "$work/b.out" client2 "$port" --kill "$a_id"
check "tls-subsys: kill-session reaches the killed client as close_notify" wait "$a"
grep -q "clean close (close_notify)" "$work/a.out" && ok "tls-subsys: killed client saw close_notify" \
    || { bad "tls-subsys: killed client saw close_notify"; cat "$work/a.out" >&2; }

# SIGTERM with a live session: close_notify, then exit 0 with everything freed.
client "$work/c.out" client "$port" --wait 60 &
c=$!
wait_for "$work/c.out" "session-id"
kill -TERM "$subsys"
check "tls-subsys: SIGTERM with a live session exits 0 (valgrind clean)" wait "$subsys"
wait "$c" || true
grep -q "clean close (close_notify)" "$work/c.out" && ok "tls-subsys: SIGTERM ends the live session with close_notify" \
    || { bad "tls-subsys: SIGTERM close_notify"; cat "$work/c.out" >&2; }
grep -q "Session from .* ended: backend-closed" "$work/subsys.log" && ok "tls-subsys: logs the close reason" \
    || bad "tls-subsys: logs the close reason"

# --- tls-subsys and a crl.pem in its directory (c-example/README.md) -----
# A stale one (nextUpdate passed) refuses every client; ConfD never sees one.
stale=$work/stale-crl
mkdir "$stale"
cp "$pki"/x509-* "$stale/"
(
    cd "$stale"
    printf '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\n' >ca.conf
    : >index.txt
    echo 01 >crlnumber
    openssl ca -config ca.conf -keyfile x509-ca-key.pem -cert x509-ca.pem -gencrl \
        -crl_lastupdate 20200101000000Z -crl_nextupdate 20200201000000Z -out crl.pem 2>/dev/null
)
(cd "$stale" && exec $wrap "$build/tls-subsys" -f -p 0 -b "$emu") >"$work/stale.log" 2>&1 &
subsys=$!
pids+=($subsys)
wait_for "$work/stale.log" "Server ready"
port=$(port_of "$work/stale.log" "Listening to port '")
if client "$work/stale.out" client "$port" --get; then
    bad "tls-subsys: a stale crl.pem refuses the client"
else
    wait_for "$work/stale.log" "Handshake with .* has failed" 10 && ok "tls-subsys: a stale crl.pem refuses the client"
fi
sessions_before=$(grep -c "user=admin source=" "$work/emu.log" || true)
kill -TERM "$subsys"
check "tls-subsys: stops cleanly after refusing (stale crl.pem)" wait "$subsys"
[ "$(grep -c "user=admin source=" "$work/emu.log" || true)" = "$sessions_before" ] &&
    ok "tls-subsys: a refused client never reaches ConfD" || bad "tls-subsys: a refused client reached ConfD"

# One it cannot read (root-only, tls-subsys run as another user) stops it at
# start, naming the file: never a silently skipped revocation check. Run
# from copies readable by that user, without valgrind (its suppressions may
# live where that user cannot read).
if [ "$(id -u)" -eq 0 ]; then
    private=$work/private-crl
    mkdir "$private"
    cp "$stale"/x509-server.pem "$stale"/x509-server-key.pem "$stale"/x509-ca.pem "$stale"/crl.pem "$build/tls-subsys" "$private/"
    chmod 755 "$work" "$private"
    chmod 644 "$private"/x509-*
    chmod 600 "$private/crl.pem"
    status=0
    (cd "$private" && exec timeout 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
        ./tls-subsys -f -p 0 -b "$emu") >"$work/private.log" 2>&1 || status=$?
    if [ "$status" -eq 1 ] && grep -q "crl.pem.*Permission denied" "$work/private.log"; then
        ok "tls-subsys: an unreadable crl.pem stops it at start, naming the file"
    else
        bad "tls-subsys: an unreadable crl.pem stops it at start (exit $status)"; cat "$work/private.log" >&2
    fi
else
    bad "tls-subsys: unreadable crl.pem: needs root (to run tls-subsys as another user)"
fi

# --- embed: the server on a thread, identity and session-end callbacks ----
$wrap "$build/embed" -l 127.0.0.1:0 -b "$emu" -d "$pki" -m admin=admin >"$work/embed.out" 2>"$work/embed.err" &
embed=$!
pids+=($embed)
wait_for "$work/embed.out" "listening on port"
port=$(port_of "$work/embed.out" "listening on port ")

check "embed: a whole session" client "$work/e1.out" client "$port" --get --close-session
wait_for "$work/embed.out" "user=admin .*reason=backend-closed"
if client "$work/e2.out" client2 "$port" --get; then
    bad "embed: the identity callback refuses oper"
else
    wait_for "$work/embed.out" "user=- .*reason=refused" && ok "embed: the identity callback refuses oper"
fi
client "$work/e3.out" client "$port" --lock --wait 60 &
e3=$!
wait_for "$work/e3.out" "lock:"
kill -TERM "$embed"
check "embed: SIGTERM with a live session exits 0 (valgrind clean)" wait "$embed"
wait "$e3" || true
grep -q "clean close (close_notify)" "$work/e3.out" && ok "embed: SIGTERM ends the live session with close_notify" \
    || { bad "embed: SIGTERM close_notify"; cat "$work/e3.out" >&2; }
grep -q "reason=shutdown" "$work/embed.out" && grep -q "stopped; 1 client(s) refused" "$work/embed.out" \
    && ok "embed: session-end callback saw the shutdown" || { bad "embed: session-end lines"; cat "$work/embed.out" >&2; }
grep -q "nctls INFO: listening on" "$work/embed.err" && ok "embed: log callback" \
    || { bad "embed: log callback"; cat "$work/embed.err" >&2; }

if [ "$failed" -ne 0 ]; then
    for f in "$work"/*.log "$work"/embed.*; do echo "== $f" >&2; cat "$f" >&2; done
fi
echo "c-test [$label]: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
