#!/usr/bin/env bash
# bench/run.sh [--quick]: nctls side by side with hitch, stunnel and socat.
#
# For before/after work: NCTLS_BEFORE=/path/to/old/nctls adds a row
# `nctls-before` measured in the same run; BENCH_RELAYS="nctls hitch" and
# BENCH_ONLY="bulk-up sessions" restrict what runs (the report then shows
# only those); NCTLS_VARIANTS="small=/path/a fast=/path/b" adds rows
# nctls-small, nctls-fast (other builds); BENCH_REPEATS=N overrides the repeat count. Such runs write
# TARGET/bench/RESULTS-*-partial.md instead of bench/RESULTS.md (TARGET: cargo's
# target directory, scripts/target-dir.sh).
# Installs the peers from Debian if missing, builds nctls and the load
# generator (examples/loadgen), makes an ECDSA P-256 PKI, then for every
# repeat runs each workload against each relay, started afresh for it: the
# relay pinned to CPU 0, the load generator and its backend to CPU 1. The
# load generator measures the relay's CPU and memory from /proc and prints
# `LABEL WORKLOAD METRIC VALUE` lines; `loadgen report` writes the medians and
# nctls/peer ratios to bench/RESULTS.md (--quick: TARGET/bench/RESULTS-quick.md).
#
# Traffic stays on 127.0.0.1. Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
--quick) mode=quick ;;
"") ;;
*)
    echo "usage: $0 [--quick]" >&2
    exit 2
    ;;
esac

target=$(scripts/target-dir.sh)
out=$target/bench
pki=$out/pki
logs=$out/logs
results=$out/results.tsv
meta=$out/meta.tsv
loadgen=$target/release/examples/loadgen
nctls=$target/release/nctls

# The relay under test runs alone on CPU 0; load generator and backend on CPU 1.
relay_cpu=0
load_cpu=1

hard_fds=$(ulimit -Hn)
if [ "$hard_fds" = unlimited ]; then hard_fds=1048576; fi
# Two descriptors per relayed session (client and backend) and the
# load generator holds both ends too: stay under the hard limit.
big=$(((hard_fds - 200) / 2))
if [ "$big" -gt 10000 ]; then big=10000; fi

if [ "$mode" = full ]; then
    repeats=3
    bulk_bytes=$((1 << 30))
    bulk_human="1 GiB"
    sessions=2000
    close_count=1000
    stage_small=1000
    idle_seconds=10
    streams=100
    stream_seconds=3
    report=bench/RESULTS.md
    command="make bench"
else
    repeats=1
    bulk_bytes=$((128 << 20))
    bulk_human="128 MiB"
    sessions=300
    close_count=200
    stage_small=200
    big=1000
    idle_seconds=2
    streams=20
    stream_seconds=1
    report=$out/RESULTS-quick.md
    command="make bench-quick"
fi
concurrency=16
repeats=${BENCH_REPEATS:-$repeats}
# A partial or before/after run never overwrites bench/RESULTS.md or the
# data it was made from.
if [ -n "${BENCH_RELAYS:-}${BENCH_ONLY:-}${NCTLS_BEFORE:-}${NCTLS_VARIANTS:-}${BENCH_REPEATS:-}" ]; then
    report=$out/RESULTS-$mode-partial.md
    results=$out/results-partial.tsv
    meta=$out/meta-partial.tsv
fi

say() { echo "bench: $*" >&2; }

# --- set-up ------------------------------------------------------------------

need=()
command -v stunnel4 >/dev/null || need+=(stunnel4)
command -v hitch >/dev/null || need+=(hitch)
command -v socat >/dev/null || need+=(socat)
command -v openssl >/dev/null || need+=(openssl)
command -v taskset >/dev/null || need+=(util-linux)
command -v ss >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        say "missing ${need[*]}; install them (apt-get install ${need[*]}) or run as root"
        exit 1
    fi
    say "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ "$(nproc)" -lt 2 ]; then
    say "needs two CPUs (relay and load generator on separate cores)"
    exit 1
fi

say "building"
cargo build --release --quiet --bin nctls --example loadgen

mkdir -p "$out" "$logs"
rm -f "$results" "$meta" "$logs"/*
timing=${results%.tsv}-timing.tsv
rm -f "$timing"
if [ ! -e "$pki/x509-ca.pem" ]; then
    certs/make-certs.sh "$pki" >/dev/null
fi
cat "$pki/x509-server.pem" "$pki/x509-server-key.pem" >"$pki/hitch.pem"
# hitch drops to nobody before it reads the CA file.
chmod 755 "$pki"
chmod 644 "$pki"/*.pem

# --- relays --------------------------------------------------------------------

port_free() { [ -z "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }

# A fresh pair of free ports for every relay start (no TIME_WAIT reuse).
next_port=$((30000 + RANDOM % 20000))
take_port() { # sets $taken (no subshell: the counter must advance)
    local tries=0
    while [ $tries -lt 1000 ]; do
        next_port=$((next_port + 1))
        if [ $next_port -gt 60000 ]; then next_port=30000; fi
        if port_free $next_port; then
            taken=$next_port
            return 0
        fi
        tries=$((tries + 1))
    done
    say "no free port found"
    return 1
}

hitch_conf() { # PORT BACKEND_PORT
    cat <<EOF
frontend = "[127.0.0.1]:$1"
backend = "[127.0.0.1]:$2"
pem-file = "$pki/hitch.pem"
tls-protos = TLSv1.2 TLSv1.3
ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"
ciphersuites = "TLS_AES_128_GCM_SHA256"
client-verify = required
client-verify-ca = "$pki/x509-ca.pem"
workers = 1
daemon = off
# hitch refuses to run its workers as root.
user = "nobody"
group = "nogroup"
EOF
}

stunnel_conf() { # PORT BACKEND_PORT
    cat <<EOF
foreground = yes
pid =
[bench]
accept = 127.0.0.1:$1
connect = 127.0.0.1:$2
cert = $pki/x509-server.pem
key = $pki/x509-server-key.pem
CAfile = $pki/x509-ca.pem
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.2
ciphers = ECDHE-ECDSA-AES128-GCM-SHA256
ciphersuites = TLS_AES_128_GCM_SHA256
# nctls does no tcp-wrappers check either.
libwrap = no
EOF
}

# The command line of LABEL listening on PORT, relaying to BACKEND_PORT.
relay_command() { # LABEL PORT BACKEND_PORT
    local label=$1 port=$2 bport=$3
    case $label in
    nctls*)
        local extra="" bin=$nctls v
        [ "$label" = nctls-16k ] && extra="--max-record 16384"
        [ "$label" = nctls-before ] && bin=$NCTLS_BEFORE
        for v in ${NCTLS_VARIANTS:-}; do
            [ "$label" = "nctls-${v%%=*}" ] && bin=${v#*=}
        done
        echo "$bin --listen 127.0.0.1:$port --backend 127.0.0.1:$bport" \
            "--cert $pki/x509-server.pem --key $pki/x509-server-key.pem --ca $pki/x509-ca.pem" \
            "--header confd --max-sessions 20000 $extra"
        ;;
    hitch)
        hitch_conf "$port" "$bport" >"$out/hitch.conf"
        echo "hitch --config=$out/hitch.conf"
        ;;
    stunnel)
        stunnel_conf "$port" "$bport" >"$out/stunnel.conf"
        echo "stunnel4 $out/stunnel.conf"
        ;;
    socat)
        echo "socat OPENSSL-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,backlog=1024,cert=$pki/x509-server.pem,key=$pki/x509-server-key.pem,cafile=$pki/x509-ca.pem,verify=1,openssl-min-proto-version=TLS1.2 TCP:127.0.0.1:$bport"
        ;;
    esac
}

relay_pid=""

stop_relay() {
    [ -n "$relay_pid" ] || return 0
    # The relay leads its own process group (setsid): hitch's workers and
    # socat's forked children go with it.
    kill -TERM -- "-$relay_pid" 2>/dev/null || true
    local i
    for i in $(seq 50); do
        kill -0 -- "-$relay_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    relay_pid=""
}
trap stop_relay EXIT

start_relay() { # LABEL PORT BACKEND_PORT LOG
    local cmd
    cmd=$(relay_command "$1" "$2" "$3")
    # shellcheck disable=SC2086 # the command is a word list
    setsid taskset -c $relay_cpu $cmd >"$4" 2>&1 &
    relay_pid=$!
    local i
    for i in $(seq 100); do
        if ! kill -0 "$relay_pid" 2>/dev/null; then
            say "$1 did not start: $(tail -3 "$4")"
            relay_pid=""
            return 1
        fi
        if ! port_free "$2"; then
            sleep 0.2 # let workers come up
            return 0
        fi
        sleep 0.05
    done
    say "$1 is not listening on $2"
    stop_relay
    return 1
}

# --- workloads -----------------------------------------------------------------

failures=0
runs=0

# run LABEL WORKLOAD [LOADGEN OPTIONS...]: one workload against a fresh relay.
run() {
    local label=$1 workload=$2
    shift 2
    local port bport log
    take_port
    port=$taken
    take_port
    bport=$taken
    runs=$((runs + 1))
    log=$logs/$(printf %03d $runs)-$label-$workload
    local t0=$SECONDS
    start_relay "$label" "$port" "$bport" "$log.relay.log" || {
        failures=$((failures + 1))
        printf 'failure\t%s %s (repeat %s): relay did not start\n' "$label" "$workload" "$rep" >>"$meta"
        return 0
    }
    if ! taskset -c $load_cpu "$loadgen" "$workload" --label "$label" \
        --relay "127.0.0.1:$port" --backend "127.0.0.1:$bport" --pid "$relay_pid" \
        --ca "$pki/x509-ca.pem" --cert "$pki/client.pem" --key "$pki/client-key.pem" \
        "$@" >>"$results" 2>"$log.loadgen.log"; then
        failures=$((failures + 1))
        say "$label $workload failed: $(tail -1 "$log.loadgen.log")"
        printf 'failure\t%s %s (repeat %s): %s\n' "$label" "$workload" "$rep" \
            "$(tail -1 "$log.loadgen.log")" >>"$meta"
    fi
    stop_relay
    printf '%s\t%s\t%s\t%s\n' "$label" "$workload" "$*" $((SECONDS - t0)) >>"$timing"
}

# shellcheck disable=SC2206 # a word list on purpose
relays=(${BENCH_RELAYS:-nctls nctls-16k hitch stunnel socat})
if [ -n "${NCTLS_BEFORE:-}" ]; then
    [ -x "$NCTLS_BEFORE" ] || {
        say "NCTLS_BEFORE=$NCTLS_BEFORE is not an executable"
        exit 1
    }
    relays=(nctls-before "${relays[@]}")
fi
for v in ${NCTLS_VARIANTS:-}; do
    [ -x "${v#*=}" ] || {
        say "NCTLS_VARIANTS: ${v#*=} is not an executable"
        exit 1
    }
    relays+=("nctls-${v%%=*}")
done

# want WORKLOAD: is it selected by BENCH_ONLY (default: everything)?
want() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }

for rep in $(seq "$repeats"); do
    for label in "${relays[@]}"; do
        say "repeat $rep/$repeats: $label"
        want bulk-up && run "$label" bulk-up --bytes $bulk_bytes
        want bulk-down && run "$label" bulk-down --bytes $bulk_bytes
        # nctls-16k differs from nctls only in the records it sends.
        [ "$label" = nctls-16k ] && continue
        want sessions && run "$label" sessions --count $sessions --concurrency $concurrency
        want close && run "$label" close --count $close_count
        # The large stage is slow for forking relays and its memory figure
        # does not vary: it runs in the first repeat only.
        if [ "$rep" = 1 ]; then stages="$stage_small,$big"; else stages=$stage_small; fi
        want idle && run "$label" idle --stages "$stages" --idle-seconds $idle_seconds
        want stream && run "$label" stream --count $streams --seconds $stream_seconds
        want tls12 && run "$label" bulk-up --tls 1.2 --bytes $bulk_bytes
        want tls12 && run "$label" bulk-down --tls 1.2 --bytes $bulk_bytes
        want tls12 && run "$label" sessions --tls 1.2 --count $sessions --concurrency $concurrency
    done
done

# --- footprint, ceiling, report ------------------------------------------------

footprint() { # LABEL BINARY
    local label=$1 bin
    bin=$(readlink -f "$2")
    local stripped=$out/stripped.bin
    strip -o "$stripped" "$bin"
    printf '%s\tfootprint\tbinary_bytes\t%s\n' "$label" "$(stat -c %s "$stripped")" >>"$results"
    rm -f "$stripped"
    local libs="" bytes=0 name path
    while read -r name path; do
        case $name in
        linux-vdso* | ld-linux* | libc.so* | libm.so* | libgcc_s.so* | libpthread.so* | libdl.so* | librt.so*) continue ;;
        esac
        libs="$libs $name"
        bytes=$((bytes + $(stat -L -c %s "$path")))
    done < <(ldd "$bin" | awk '/=>/ { print $1, $3 }')
    printf '%s\tfootprint\tlibs\t%s\n' "$label" "${libs# }" >>"$results"
    [ -n "$libs" ] || libs="(none)"
    printf '%s\tfootprint\tlib_bytes\t%s\n' "$label" "$bytes" >>"$results"
}
for label in "${relays[@]}"; do
    case $label in
    nctls) footprint nctls "$nctls" ;;
    nctls-before) footprint nctls-before "$NCTLS_BEFORE" ;;
    nctls-*)
        for v in ${NCTLS_VARIANTS:-}; do
            [ "$label" = "nctls-${v%%=*}" ] && footprint "$label" "${v#*=}"
        done
        ;;
    hitch) footprint hitch "$(command -v hitch)" ;;
    stunnel) footprint stunnel "$(command -v stunnel4)" ;;
    socat) footprint socat "$(command -v socat)" ;;
    esac
done

# openssl speed prints thousands of bytes per second per block size.
speed=$(taskset -c $relay_cpu openssl speed -evp aes-128-gcm -seconds 2 -bytes 16384 2>/dev/null | tail -1)
kbps=$(echo "$speed" | awk '{ v = $NF; sub(/k$/, "", v); print v }')
ceiling=$(awk -v k="$kbps" 'BEGIN { if (k > 0) printf "%.3f", 1073741824 / (k * 1000); else print "?" }')

{
    printf 'command\t%s\n' "$command"
    printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
    printf 'cpu\t%s\n' "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    printf 'cores\t%s\n' "$(nproc)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'memory\t%s\n' "$(free -g | awk '/Mem:/ { print $2 " GiB RAM" }')"
    printf 'repeats\t%s\n' "$repeats"
    printf 'bulk_bytes\t%s\n' "$bulk_human"
    printf 'sessions\t%s\n' "$sessions"
    printf 'concurrency\t%s\n' "$concurrency"
    printf 'close_count\t%s\n' "$close_count"
    printf 'idle_seconds\t%s\n' "$idle_seconds"
    printf 'stage_small\t%s\n' "$stage_small"
    printf 'stage_big\t%s\n' "$big"
    printf 'hard_fds\t%s\n' "$hard_fds"
    printf 'streams\t%s\n' "$streams"
    printf 'ceiling_cpu_s_per_gib\t%s\n' "$ceiling"
    printf 'ceiling_line\t%s\n' "$(echo "$speed" | tr -s ' ')"
    printf 'version\tnctls %s (git %s), rustc %s\n' "$(awk -F'"' '/^version/ { print $2; exit }' Cargo.toml)" \
        "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$(rustc --version | awk '{ print $2 }')"
    printf 'version\t%s\n' "$(hitch --version 2>&1 | head -1)"
    printf 'version\t%s\n' "$(stunnel4 -version 2>&1 | grep -m1 '^stunnel')"
    printf 'version\t%s\n' "$(socat -V 2>/dev/null | grep -m1 'socat version')"
    printf 'version\t%s\n' "$(openssl version)"
    for label in "${relays[@]}"; do
        printf 'relay\t%s: taskset -c %s %s\n' "$label" "$relay_cpu" "$(relay_command "$label" PORT BPORT)"
    done
    printf 'relay\tload generator: taskset -c %s %s WORKLOAD --relay 127.0.0.1:PORT --backend 127.0.0.1:BPORT ...\n' \
        "$load_cpu" "target/release/examples/loadgen"
    printf 'config\thitch.conf:\\n```\\n%s\\n```\n' "$(hitch_conf PORT BPORT | awk '{ printf "%s\\n", $0 }')"
    printf 'config\tstunnel.conf:\\n```\\n%s\\n```\n' "$(stunnel_conf PORT BPORT | awk '{ printf "%s\\n", $0 }')"
} >>"$meta"
# relay_command rewrote the config files with placeholder ports; they are not used again.

"$loadgen" report --results "$results" --meta "$meta" --out "$report"
say "wrote $report ($failures failed workload runs)"
