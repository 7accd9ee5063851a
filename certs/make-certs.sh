#!/usr/bin/env bash
# make-certs.sh DIR -- create the nctls demo PKI (ECDSA P-256) in DIR.
#
# File names follow ConfD's GnuTLS demo: x509-ca.pem, x509-server.pem,
# x509-server-key.pem, plus client.pem/client-key.pem (CN "admin") and
# client2.pem/client2-key.pem (CN "oper"). Keys are PKCS#8 PEM.
# Demo use only: keys are unencrypted.
set -euo pipefail

usage() {
    echo "usage: $0 DIR" >&2
    exit 2
}

[ $# -eq 1 ] || usage
dir=$1

if [ -e "$dir/x509-ca.pem" ]; then
    echo "make-certs: $dir/x509-ca.pem exists, nothing to do"
    exit 0
fi

mkdir -p "$dir"
# Build everything in a scratch directory and move it into place at the end,
# so an interrupted run never leaves a half-made PKI that looks complete.
work=$(mktemp -d "$dir/.make-certs.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Run openssl quietly (3.x chats on stderr), but show its output on failure.
ossl() {
    local out
    if ! out=$(openssl "$@" 2>&1); then
        echo "make-certs: openssl $1 failed:" >&2
        echo "$out" >&2
        exit 1
    fi
}

# One config file for all certificates: the CA is self-signed with
# `req -x509`, the leaves are signed with `x509 -req -extensions ...`.
cat >"$work/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

new_key() {
    # genpkey writes PKCS#8 ("BEGIN PRIVATE KEY"), which is what we want.
    ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$1"
}

serial() {
    echo "0x$(openssl rand -hex 16)"
}

make_ca() {
    new_key x509-ca-key.pem
    ossl req -config "$work/openssl.cnf" -new -x509 -sha256 -days 3650 \
        -key "$work/x509-ca-key.pem" -subj "/CN=nctls demo CA" \
        -extensions ca_ext -set_serial "$(serial)" -out "$work/x509-ca.pem"
}

# make_leaf NAME CN EXTENSION_SECTION
make_leaf() {
    local name=$1 cn=$2 ext=$3
    new_key "$name-key.pem"
    ossl req -config "$work/openssl.cnf" -new -sha256 \
        -key "$work/$name-key.pem" -subj "/CN=$cn" -out "$work/$name.csr"
    ossl x509 -req -sha256 -days 3650 -in "$work/$name.csr" \
        -CA "$work/x509-ca.pem" -CAkey "$work/x509-ca-key.pem" \
        -set_serial "$(serial)" -extfile "$work/openssl.cnf" \
        -extensions "$ext" -out "$work/$name.pem"
    ossl verify -CAfile "$work/x509-ca.pem" "$work/$name.pem"
}

make_ca
make_leaf x509-server localhost server_ext
make_leaf client admin client_ext
make_leaf client2 oper client_ext

chmod 600 "$work"/*-key.pem
# The CA certificate goes last: its presence marks the PKI as complete.
for f in x509-ca-key.pem x509-server.pem x509-server-key.pem \
    client.pem client-key.pem client2.pem client2-key.pem x509-ca.pem; do
    mv "$work/$f" "$dir/$f"
done

echo "make-certs: created CA, server (localhost) and clients admin, oper in $dir"
