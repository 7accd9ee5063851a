#!/usr/bin/env bash
# fresh-clone.sh: the Makefile as a new user runs it, from a fresh copy of
# the tree with CARGO_TARGET_DIR elsewhere (as in CI and shared build trees):
#   - `make demo` works and finds what cargo built, not binaries left in the
#     copy's ./target: stale ones planted there fail the demo if used, and
#     ./target must be exactly as planted afterwards;
#   - two `make install`s with two PREFIXes each ship a nctls.pc naming their
#     own prefix, and the man pages;
#   - `cargo build --release` makes no C library, neither libnctls nor the C
#     API crate's libnctls_capi (only `make lib` may: its profile unwinds,
#     so a panic becomes NCTLS_RESULT_PANIC).
# The copy's build output is kept under cargo's target directory
# (fresh-clone/out), so a repeated run rebuilds only what changed; the first
# builds everything (release, LTO: a few minutes on 2 CPUs). The demo runs in
# a private network namespace (root): its fixed ports 2023 and 6513 never
# meet another program's.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
base=$("$root/scripts/target-dir.sh")/fresh-clone
src=$base/src
out=$base/out
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
fail() { echo "fresh-clone: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root (the demo runs in its own network namespace)"

# The copy: tracked files and new ones not ignored, as in the working tree
# (mtimes kept, so cargo and make see unchanged files as unchanged).
rm -rf "$src"
mkdir -p "$src" "$out"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done |
    xargs -0 cp -p --parents -t "$src")
[ -f "$src/Makefile" ] && [ ! -e "$src/.git" ] || fail "copy of the tree failed"

for f in release/nctls release/examples/confd-emu release/examples/nc-client dist/libnctls.a; do
    mkdir -p "$(dirname "$src/target/$f")"
    printf '#!/bin/sh\necho "stale target/%s used" >&2\nexit 99\n' "$f" >"$src/target/$f"
    chmod 755 "$src/target/$f"
done
planted() { (cd "$src" && find target -printf '%p %s %T@\n' | sort); }
planted >"$stage/target.before"

cd "$src"
# A user's own invocation: nothing inherited from a calling make.
unset MAKEFLAGS MAKELEVEL MFLAGS
export CARGO_TARGET_DIR=$out

make -s build certs >"$stage/build.log" 2>&1 || { cat "$stage/build.log" >&2; fail "make build certs failed"; }
unshare --net sh -c 'ip link set lo up && exec make -s demo' >"$stage/demo.log" 2>&1 ||
    { cat "$stage/demo.log" >&2; fail "make demo failed with CARGO_TARGET_DIR set"; }
grep -q "== result: A saw TLS close_notify" "$stage/demo.log" || { cat "$stage/demo.log" >&2; fail "the demo did not end as it should"; }

for prefix in /opt/nctls-one /opt/nctls-two; do
    make -s install DESTDIR="$stage/root" PREFIX="$prefix" >"$stage/install.log" 2>&1 ||
        { cat "$stage/install.log" >&2; fail "make install PREFIX=$prefix failed"; }
done
for prefix in /opt/nctls-one /opt/nctls-two; do
    d=$stage/root$prefix
    for f in bin/nctls lib/libnctls.so.0 lib/libnctls.a include/nctls.h share/man/man8/nctls.8 share/man/man5/nctls.conf.5; do
        [ -e "$d/$f" ] || fail "PREFIX=$prefix: $f not installed"
    done
    for var in prefix=$prefix libdir=$prefix/lib includedir=$prefix/include; do
        grep -qx "$var" "$d/lib/pkgconfig/nctls.pc" ||
            { cat "$d/lib/pkgconfig/nctls.pc" >&2; fail "PREFIX=$prefix: nctls.pc lacks $var"; }
    done
done

cargo build --release --quiet
libs=$(find "$out/release" -maxdepth 1 \( -name 'libnctls*.so*' -o -name 'libnctls*.a' \))
[ -z "$libs" ] || fail "cargo build --release made C libraries: $libs"

planted >"$stage/target.after"
diff -u "$stage/target.before" "$stage/target.after" >&2 || fail "the copy's ./target was used"
echo "fresh-clone: demo and two installs with CARGO_TARGET_DIR set, each nctls.pc its own prefix, no C library from cargo build"
