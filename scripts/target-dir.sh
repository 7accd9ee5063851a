#!/bin/sh
# Prints the absolute directory cargo builds into: $CARGO_TARGET_DIR,
# build.target-dir from a .cargo/config.toml, or ./target. Asked of cargo
# itself (from the caller's working directory, as `cargo build` would), so
# the Makefile and every script find what cargo built and never a stale copy
# elsewhere.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
json=$("${CARGO:-cargo}" metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml")
dir=$(printf '%s\n' "$json" | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
case "$dir" in
"" | *\\*)
    # Empty, or JSON-escaped (a quote or backslash in the path): not parsed here.
    echo "target-dir.sh: cannot read cargo's target_directory from 'cargo metadata'" >&2
    exit 1
    ;;
esac
printf '%s\n' "$dir"
