#!/usr/bin/env bash
# check-symbols.sh HEADER LIBNCTLS.SO LIBNCTLS.A: every function the header
# declares is exported by both libraries, and the libraries export nothing
# else under nctls_ (the shared library exports nothing else at all).
set -euo pipefail
header=$1 so=$2 a=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Declarations: "type nctls_name(" at the start of a line (cbindgen's layout).
sed -nE 's/^[a-z_ ]*[ *](nctls_[a-z0-9_]+)\(.*/\1/p' "$header" | sort -u >"$work/header"
nm -D --defined-only "$so" | awk '{print $3}' | sort -u >"$work/so-all"
grep '^nctls_' "$work/so-all" >"$work/so" || true
nm --defined-only "$a" 2>/dev/null | awk '$2 == "T" {print $3}' | grep '^nctls_' | sort -u >"$work/a" || true

status=0
if ! diff -u "$work/header" "$work/so" >"$work/d1"; then
    echo "check-symbols: header (-) vs $so (+):" >&2; cat "$work/d1" >&2; status=1
fi
if ! diff -u "$work/header" "$work/a" >"$work/d2"; then
    echo "check-symbols: header (-) vs $a (+):" >&2; cat "$work/d2" >&2; status=1
fi
if grep -v '^nctls_' "$work/so-all" >"$work/extra"; then
    echo "check-symbols: $so exports symbols outside nctls_:" >&2; cat "$work/extra" >&2; status=1
fi
n=$(wc -l <"$work/header")
[ "$status" -eq 0 ] && echo "check-symbols: $n functions, header and libraries agree"
exit "$status"
