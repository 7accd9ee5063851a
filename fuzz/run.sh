#!/usr/bin/env bash
# run.sh SECONDS: runs every fuzz target for SECONDS each (`make fuzz
# FUZZ_SECONDS=N`), one after the other, and prints per target: executions,
# executions per second, coverage (libFuzzer's edges and features) and the
# inputs that crashed. Exits 1 if any target crashed (or could not run).
#
# Needs the nightly toolchain and cargo-fuzz (`cargo +nightly install
# cargo-fuzz`) and a C++ compiler (libFuzzer). The corpus grows, and crashes
# land, under cargo's target directory (fuzz/ there): fuzz/corpus/ keeps
# only the committed seeds, and fuzz/regressions/ the inputs that once
# crashed, both read as extra corpus.
set -uo pipefail
seconds=${1:?usage: run.sh SECONDS}
fuzz=$(cd "$(dirname "$0")" && pwd)
out=${CARGO_TARGET_DIR:-$fuzz/target}/fuzz
targets=(der rules config_file header pem session)

cargo +nightly fuzz --version >/dev/null 2>&1 || {
    echo "run.sh: needs the nightly toolchain and cargo-fuzz:" >&2
    echo "  rustup toolchain install nightly && cargo +nightly install cargo-fuzz" >&2
    exit 1
}
cd "$fuzz"
# -O: cargo-fuzz's own debug-assertion flags would reach rustls too;
# fuzz/Cargo.toml's release profile turns them on for everything else.
cargo +nightly fuzz build -O || exit 1

failed=0
summary=$(printf '%-12s %11s %7s %7s %8s  %s' target executions exec/s edges features result)
for t in "${targets[@]}"; do
    mkdir -p "$out/corpus/$t" "$out/artifacts/$t"
    dirs=("$out/corpus/$t" "corpus/$t")
    [ -d "regressions/$t" ] && dirs+=("regressions/$t")
    log=$out/$t.log
    echo "fuzz: $t for ${seconds}s (log: $log)"
    # -timeout: one input may take this long (a hang is a crash too).
    cargo +nightly fuzz run -O "$t" "${dirs[@]}" -- -max_total_time="$seconds" -timeout=30 \
        -artifact_prefix="$out/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
    status=$?
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    last=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1)
    edges=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' <<<"$last")
    features=$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' <<<"$last")
    result=ok
    if [ "$status" -ne 0 ]; then
        failed=1
        crash=$(sed -n 's/.*Test unit written to \(.*\)/\1/p' "$log" | tail -n 1)
        result="FAILED (exit $status) ${crash:-see the log}"
    fi
    summary+=$(printf '\n%-12s %11s %7s %7s %8s  %s' "$t" "$(stat number_of_executed_units)" \
        "$(stat average_exec_per_sec)" "${edges:-?}" "${features:-?}" "$result")
done
echo "$summary"
exit "$failed"
