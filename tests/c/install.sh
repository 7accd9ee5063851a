#!/usr/bin/env bash
# install.sh: `make install` into a staging directory, then build the C
# examples the way users will, with exactly the commands c-example/README.md
# documents (`cc app.c $(pkg-config --cflags --libs nctls) ...`: not a word
# on stderr, also with -Wall -Wextra -Werror added), and run one against the
# installed shared library (soname libnctls.so.MAJOR).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
stage=$(mktemp -d)
trap 'if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$stage"' EXIT
cd "$root"

make -s install DESTDIR="$stage" PREFIX=/usr/local >/dev/null
for f in bin/nctls lib/libnctls.so lib/libnctls.so.0 lib/libnctls.a include/nctls.h lib/pkgconfig/nctls.pc; do
    [ -e "$stage/usr/local/$f" ] || { echo "install: missing /usr/local/$f" >&2; exit 1; }
done

export PKG_CONFIG_PATH=$stage/usr/local/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$stage
mkdir "$stage/c-example"
cp c-example/*.c "$stage/c-example/"
built=0
while IFS= read -r cmd; do
    for extra in "" " -Wall -Wextra -Werror"; do
        if ! (cd "$stage/c-example" && bash -c "$cmd$extra") >"$stage/cc.out" 2>&1 || [ -s "$stage/cc.out" ]; then
            echo "install: c-example/README.md's \`$cmd\`${extra:+ with$extra} is not clean:" >&2
            cat "$stage/cc.out" >&2
            exit 1
        fi
    done
    built=$((built + 1))
done < <(grep '^cc ' c-example/README.md)
[ "$built" -ge 2 ] || { echo "install: c-example/README.md documents $built cc commands, expected 2" >&2; exit 1; }
embed=$stage/c-example/embed
readelf -d "$embed" | grep -q 'NEEDED.*\[libnctls.so.0\]' \
    || { echo "install: embed does not link libnctls.so.0" >&2; exit 1; }
readelf -d "$stage/usr/local/lib/libnctls.so" | grep -q 'SONAME.*\[libnctls.so.0\]' \
    || { echo "install: no soname libnctls.so.0" >&2; exit 1; }

certs/make-certs.sh "$stage/pki" >/dev/null
LD_LIBRARY_PATH=$stage/usr/local/lib "$embed" -l 127.0.0.1:0 -d "$stage/pki" >"$stage/out" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "listening on port" "$stage/out" && break; sleep 0.05; done
kill -TERM "$pid"
wait "$pid" || { echo "install: embed failed:" >&2; cat "$stage/out" >&2; exit 1; }
pid=
grep -q "listening on port" "$stage/out"
echo "install: headers, libraries and nctls.pc installed; README's cc commands build clean; embed runs on libnctls.so.0"
