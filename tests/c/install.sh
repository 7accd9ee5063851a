#!/usr/bin/env bash
# install.sh: `make install` into a staging directory, then build a C
# program the way users will, `cc app.c $(pkg-config --cflags --libs nctls)`,
# and run it against the installed shared library (soname libnctls.so.MAJOR).
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
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -o "$stage/embed" c-example/embed.c \
    $(pkg-config --cflags --libs nctls) -pthread
readelf -d "$stage/embed" | grep -q 'NEEDED.*\[libnctls.so.0\]' \
    || { echo "install: embed does not link libnctls.so.0" >&2; exit 1; }
readelf -d "$stage/usr/local/lib/libnctls.so" | grep -q 'SONAME.*\[libnctls.so.0\]' \
    || { echo "install: no soname libnctls.so.0" >&2; exit 1; }

certs/make-certs.sh "$stage/pki" >/dev/null
LD_LIBRARY_PATH=$stage/usr/local/lib "$stage/embed" -l 127.0.0.1:0 -d "$stage/pki" >"$stage/out" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "listening on port" "$stage/out" && break; sleep 0.05; done
kill -TERM "$pid"
wait "$pid" || { echo "install: embed failed:" >&2; cat "$stage/out" >&2; exit 1; }
pid=
grep -q "listening on port" "$stage/out"
echo "install: headers, libraries and nctls.pc installed; pkg-config build against libnctls.so.0 runs"
