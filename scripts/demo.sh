#!/usr/bin/env bash
# The kill-session story end to end, on loopback:
#   confd-emu (a ConfD-like NETCONF server on 127.0.0.1:2023)
#   nctls     (run in the certificate directory with the GnuTLS demo's defaults)
#   client A  locks the running datastore and waits
#   client B  is denied the lock, sends <kill-session> for A
# and shows how A's TLS session ended. Usage: scripts/demo.sh CERT_DIR
set -euo pipefail

dir=$(cd "${1:?usage: demo.sh CERT_DIR}" && pwd)
bin=$("$(dirname "$0")/target-dir.sh")/release
log=$dir/logs
mkdir -p "$log"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_for() { # FILE PATTERN
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    echo "demo: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

"$bin/examples/confd-emu" --listen 127.0.0.1:2023 2>"$log/confd-emu.log" &
pids+=($!)
wait_for "$log/confd-emu.log" "listening on"

# No file options: x509-server.pem, x509-server-key.pem and x509-ca.pem are
# the defaults, as in ConfD's tls-x509-subsys demo; the backend defaults to 127.0.0.1:2023.
(cd "$dir" && exec "$bin/nctls" --listen 127.0.0.1:6513) 2>"$log/nctls.log" &
pids+=($!)
wait_for "$log/nctls.log" "listening on"

client() { "$bin/examples/nc-client" --connect 127.0.0.1:6513 --ca "$dir/x509-ca.pem" "$@"; }

echo "== client A (admin): lock running, then wait"
client --cert "$dir/client.pem" --key "$dir/client-key.pem" --lock --wait 10 >"$log/a.out" 2>&1 &
a=$!
wait_for "$log/a.out" "lock:"
sed 's/^/   A: /' "$log/a.out"
a_id=$(awk '/^session-id/ {print $2}' "$log/a.out")

echo "== client B (oper): try the lock, then kill A's session $a_id"
client --cert "$dir/client2.pem" --key "$dir/client2-key.pem" --lock --kill "$a_id" >"$log/b.out" 2>&1 || true
sed 's/^/   B: /' "$log/b.out"

status=0
wait "$a" || status=$?
echo "== client A's session ended:"
grep '^closed:' "$log/a.out" | sed 's/^/   A: /'

ok_at=$(awk '/kill-session .*: ok at/ {print $NF}' "$log/b.out")
closed_at=$(awk '/^closed:/ {print $NF}' "$log/a.out")
echo "== relay log:"
grep 'session end' "$log/nctls.log" | sed 's/^/   /'
echo "== backend log:"
sed 's/^/   /' "$log/confd-emu.log"

if [ "$status" -ne 0 ] || ! grep -q 'clean close (close_notify)' "$log/a.out"; then
    echo "demo: FAILED: client A did not see a clean TLS close" >&2
    exit 1
fi
awk -v a="$ok_at" -v c="$closed_at" 'BEGIN {
    d = c - a; if (d < 0) d = -d
    printf "== result: A saw TLS close_notify %.3f ms from B'"'"'s <ok/> (ConfD closes the killed session before replying)\n", d }'
