#!/usr/bin/env bash
# make-seeds.sh [pki]: writes the fuzz targets' seed corpora (fuzz/corpus/).
#
#   make-seeds.sh       the hand-made seeds: config files, headers, and
#                       session scenarios (one per row of the README's
#                       close table, and more), spelled with named operations
#   make-seeds.sh pki   also remakes the fixed test PKI (fuzz/pki/) and the
#                       seeds made from it with openssl (der, pem, rules)
#
# Everything it writes is committed, so every fuzz run and every replay in
# `make test` sees the same inputs; remake the PKI only to change it. The PKI
# is Ed25519 (fixed-size, deterministic signatures: a handshake has the same
# shape every run) and valid for 100 years. Its keys are test keys.
set -euo pipefail
fuzz=$(cd "$(dirname "$0")" && pwd)
pki=$fuzz/pki
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Bytes by number: `bytes 20 0 255`.
bytes() { for b in "$@"; do printf "\\x$(printf %02x "$b")"; done; }

# Config files, as operators write them (README's syntax).
conf=$fuzz/corpus/config_file
rm -rf "$conf"
mkdir -p "$conf"
cat >"$conf/readme" <<'EOF'
# /etc/nctls/nctls.conf
listen = [::]:6513
backend = 127.0.0.1:2023
cert = x509-server.pem          # /etc/nctls/x509-server.pem
key = x509-server-key.pem
ca = x509-ca.pem
crl = ca.crl
map = 04:9A:12:3F:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB specified admin
map = * san-rfc822-name
map = * common-name
groups = oper
user-fields = admin uid=1000 gid=10 groups=admin,wheel home=/home/%u
proto = 'tls'                   # quotes are removed
EOF
cat >"$conf/quoting" <<'EOF'
user = "j\u{fc}rgen \"the admin\""   # a comment
home = '/homes/%u #1'
groups =
subgids = ''
log-level=debug
EOF
cat >"$conf/ncx" <<'EOF'
header = ncx:830
backend = unix:/run/netconfd/ncxserver.sock
map = * san-any
map = 02:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33 common-name
EOF
cat >"$conf/limits" <<'EOF'
listen = 0.0.0.0:6513
listen = [fe80::1%lo]:6513
min-tls = 1.3
header = confd-b64
handshake-timeout = 2.5
connect-timeout = 0.125
idle-timeout = 600
drain-timeout = 10
tls12-close = half-close
max-sessions = 50
max-sessions-per-ip = 4
max-record = 16384
tcp-keepalive = 0
expiry-warning = 0
syslog = local3
EOF
printf 'user = admin\nuser = oper\n' >"$conf/set-twice"
printf 'user = "unterminated\n' >"$conf/unterminated"
printf 'log-file = nctls.log\nsyslog = daemon\n' >"$conf/two-log-outputs"
printf 'user = admin\nmap = * common-name\n' >"$conf/user-and-map"

# Headers: the header byte (and ncx's port), the client address, uid and
# gid, then user, proto, subgids, home, groups, a --user-fields value and a
# --header value, NUL-separated (fuzz/src/header.rs).
hdr=$fuzz/corpus/header
rm -rf "$hdr"
mkdir -p "$hdr"
{ bytes 0 0 192 0 2 7 156 65 0 0 35 40 0 0 0 100
  printf 'admin\0ssh\0\0/var/confd/homes/%%u\0\0admin uid=1000 groups=admin,wheel\0confd'; } >"$hdr/confd"
{ bytes 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 23 113 0 0 0 0 0 0 0 0 0
  printf 'a;b]\n \xc3\xbc\0tls\0 10,20\0/h/%%u\0wheel\0x\0confd-b64'; } >"$hdr/confd-b64"
{ bytes 2 3 62 1 254 128 0 0 0 0 0 0 0 0 0 0 0 0 0 1 23 113 1 0 0 0 1 0 0 0 1
  printf '<&"\x27>\0ssh\0\0/h\0\0\0ncx:830'; } >"$hdr/ncx-zone"
{ bytes 0 1 0 0 0 0 0 0 0 0 0 0 255 255 10 0 0 1 0 22 0 0 0 0 1 0 0 0 1
  printf 'oper\0ssh\0\0/h/%%u;x\0\0\0none'; } >"$hdr/mapped-v4-bad-home"
{ bytes 3 0 127 0 0 1 0 1 0 0 0 0 0 0 0 0; printf 'any\0\0\0\0\0\0none'; } >"$hdr/none"

# Session scenarios: three setup bytes, then named operations
# (fuzz/src/session.rs has their numbers and arguments).
ses=$fuzz/corpus/session
rm -rf "$ses"
mkdir -p "$ses"
setup() { bytes "$@"; }
write_up() { bytes 0 "$1"; }        # 1 + 64 * N plaintext bytes from the client
flush() { bytes 1 "$1"; }           # 16 * N of its TLS bytes onto the socket (0: all)
close_notify() { bytes 2; }
key_update() { bytes 3; }
garbage() { bytes 4 $#; bytes "$@"; }
alert() { bytes 5 "$1" "$2"; }
client_eof() { bytes 6; }
client_reset() { bytes 7 "$1"; }    # 1: the loop also sees the error event
recv() { bytes 8 "$1"; }            # the client reads 64 * N (0: all)
client_room() { bytes 9 "$1"; }     # 0: WouldBlock, 255: plenty, else 64 * N
drop_wire() { bytes 10; }           # the client's TLS bytes not delivered are lost; EOF
write_down() { bytes 11 "$1"; }     # 1 + 64 * N bytes from the backend
backend_eof() { bytes 12; }
backend_close() { bytes 13; }
backend_reset() { bytes 14; }
backend_room() { bytes 15 "$1"; }
connect() { bytes 16 "$1"; }        # 0 ok, 1 reset, 2 refused, 3 error
wait_for() { bytes 17 "$1"; }       # 50 ms * N, then the timers
shutdown() { bytes 18; }
wake() { bytes 19; }
exchange() { bytes 20; }
timer() { bytes 21; }
admit() { bytes 0; }                # the identity decision, right after the
refuse() { bytes 7; }               # exchange that finishes the handshake
session() {
    local name=$1
    shift
    eval "$*" >"$ses/$name"
}
relaying='exchange; admit; connect 0; exchange'
session row1-backend-closes "setup 0 0 0; $relaying; write_up 16; write_down 32; backend_eof; exchange; close_notify; exchange"
session row1-tls12 "setup 1 0 0; $relaying; write_down 200; backend_close; exchange; close_notify; exchange"
session row2-tls13-half-close "setup 0 0 0; $relaying; write_up 3; close_notify; exchange; write_down 5; exchange; backend_eof; exchange"
session row2-tls12-strict "setup 1 0 0; $relaying; write_up 3; close_notify; write_down 5; exchange; backend_eof; exchange"
session row2-tls12-half-close "setup 9 0 0; $relaying; close_notify; exchange; write_down 5; backend_eof; exchange"
session row3-client-eof "setup 0 0 0; $relaying; write_up 100; flush 5; client_eof; exchange"
session row3-client-reset "setup 0 0 0; $relaying; write_up 1; exchange; client_reset 1; exchange"
session row3-garbage "setup 0 0 0; $relaying; garbage 23 3 3 0 5 104 101 108 108 111; exchange"
session row3-alert "setup 1 0 0; $relaying; alert 2 40; exchange"
session row4-refused "setup 0 0 0; exchange; admit; connect 2; exchange; close_notify; exchange"
session row4-next-address "setup 0 0 4; exchange; admit; connect 2; wait_for 40; connect 0; exchange; write_up 2; write_down 2; exchange"
session row4-connect-timeout "setup 0 0 0; exchange; admit; wait_for 100; exchange; client_eof; exchange"
session row5-no-certificate "setup 4 0 0; exchange; exchange"
session row5-untrusted "setup 6 0 0; exchange; exchange"
session row5-raw "setup 32 0 0; garbage 22 3 1 0 0; client_eof; wake"
session row6-handshake-timeout "setup 0 0 0; flush 3; wait_for 100; timer"
session row6-idle-timeout "setup 0 64 0; $relaying; wait_for 40; exchange; wait_for 100"
session row6-drain-timeout "setup 0 0 0; $relaying; client_room 0; backend_eof; exchange; wait_for 40; wait_for 40"
session row7-shutdown "setup 0 0 0; $relaying; write_down 10; shutdown; exchange; write_up 10; exchange; client_eof; exchange"
session identity-refused "setup 0 0 0; write_up 4; exchange; refuse; exchange; close_notify; exchange"
session chain-small-records "setup 66 0 0; $relaying; write_up 255; write_down 255; exchange"
session slow-client "setup 0 3 0; $relaying; client_room 0; write_down 255; write_down 255; exchange; client_room 2; recv 3; client_room 255; exchange"
session slow-backend "setup 0 0 0; $relaying; backend_room 0; write_up 255; write_up 255; exchange; backend_room 5; exchange; backend_room 255; exchange"
session key-update "setup 0 0 0; $relaying; write_up 1; key_update; write_up 1; exchange"
session records-cut "setup 0 0 0; $relaying; write_up 20; flush 3; flush 7; wake; drop_wire; exchange"
session eager-cooperative "setup 144 0 0; write_down 3; exchange; admit; exchange; connect 0; write_up 3; close_notify; write_down 3; backend_eof"
session connect-reset "setup 0 0 0; exchange; admit; connect 1; exchange; timer"

[ "${1:-}" = pki ] || exit 0
cd "$work"

ossl() {
    local out
    if ! out=$(openssl "$@" 2>&1); then
        echo "make-seeds: openssl $1 failed:" >&2
        echo "$out" >&2
        exit 1
    fi
}

cat >openssl.cnf <<'EOF'
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
subjectAltName = DNS:localhost
[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = email:Admin@Example.COM, DNS:Admin.Example.COM, IP:192.0.2.7, IP:2001:db8::7
[oper_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectAltName = email:oper@example.com
[crl_ext]
issuingDistributionPoint = critical, @idp
[idp]
fullname = URI:http://crl.example/ca.crl
onlysomereasons = keyCompromise
[ca]
default_ca = ca_section
[ca_section]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 30
EOF

days=36500
key() { ossl genpkey -algorithm ED25519 -out "$1"; }
# self-signed NAME CN [DAYS]
self_signed() {
    ossl req -config openssl.cnf -new -x509 -days "${3:-$days}" -key "$1-key.pem" \
        -subj "/CN=$2" -extensions ca_ext -set_serial "0x$(openssl rand -hex 8)" -out "$1.pem"
}
# issue NAME SUBJECT EXTENSIONS ISSUER
issue() {
    [ -f "$1-key.pem" ] || key "$1-key.pem"
    ossl req -config openssl.cnf -new -key "$1-key.pem" -subj "$2" -out "$1.csr"
    ossl x509 -req -in "$1.csr" -CA "$4.pem" -CAkey "$4-key.pem" -days "$days" \
        -set_serial "0x$(openssl rand -hex 8)" -extfile openssl.cnf -extensions "$3" -out "$1.pem"
}

key ca-key.pem
self_signed ca "nctls fuzz CA"
# The CA renewed: the same subject and key in a second certificate.
cp ca-key.pem ca-renewed-key.pem
self_signed ca-renewed "nctls fuzz CA" 36000
issue inter "/CN=nctls fuzz intermediate" ca_ext ca
issue server "/CN=localhost" server_ext ca
issue client "/CN=admin/O=nctls fuzz" client_ext ca
issue oper "/CN=oper" oper_ext inter
key other-ca-key.pem
self_signed other-ca "another CA"
issue other "/CN=admin" client_ext other-ca

rm -rf "$pki"
mkdir -p "$pki"
for f in ca ca-renewed inter server server-key client client-key oper oper-key other other-key; do
    cp "$f.pem" "$pki/$f.pem"
done

# Certificates and CRLs of other shapes, for the DER reader's seeds only.
ossl req -config openssl.cnf -new -x509 -days 30 -newkey rsa:2048 -nodes -keyout rsa-key.pem \
    -subj $'/C=DE/O=Gr\xc3\xbc\xc3\x9fe GmbH/OU=net+OU=ops/CN=r\xc3\xa9seau' -utf8 -out rsa.pem
ossl req -config openssl.cnf -new -x509 -days 30 -newkey ec -pkeyopt ec_paramgen_curve:P-384 \
    -nodes -keyout p384-key.pem -subj "/CN=one/CN=two/emailAddress=a@b.example/DC=example" -out p384.pem
ossl req -config openssl.cnf -new -key client-key.pem -subj "/CN=v1" -out v1.csr
ossl x509 -req -in v1.csr -CA ca.pem -CAkey ca-key.pem -days 30 -set_serial 1 -out v1.pem
printf '[req]\ndistinguished_name = dn\nprompt = no\nstring_mask = MASK:0x800\n[dn]\nCN = bmp\n' >bmp.cnf
ossl req -config bmp.cnf -new -x509 -days 30 -key client-key.pem -out bmp.pem
touch index.txt
echo 02 >crlnumber
ossl ca -config openssl.cnf -gencrl -keyfile ca-key.pem -cert ca.pem -out crl.pem
echo 0100 >crlnumber
ossl ca -config openssl.cnf -revoke client.pem -keyfile ca-key.pem -cert ca.pem
ossl ca -config openssl.cnf -gencrl -keyfile ca-key.pem -cert ca.pem -crlexts crl_ext -out crl-idp.pem

der=$fuzz/corpus/der
rm -rf "$der"
mkdir -p "$der"
for f in ca ca-renewed inter server client oper other rsa p384 v1 bmp; do
    ossl x509 -in "$f.pem" -outform der -out "$der/$f.der"
done
for f in crl crl-idp; do
    ossl crl -in "$f.pem" -outform der -out "$der/$f.der"
done

pem=$fuzz/corpus/pem
rm -rf "$pem"
mkdir -p "$pem"
cat server.pem ca.pem >"$pem/chain.pem"
cp client-key.pem "$pem/pkcs8-ed25519.pem"
ossl pkey -in p384-key.pem -traditional -out "$pem/sec1-p384.pem"
ossl pkey -in rsa-key.pem -traditional -out "$pem/pkcs1-rsa.pem"
ossl pkey -in p384-key.pem -aes128 -passout pass:x -out "$pem/encrypted-pkcs8.pem"
ossl pkey -in p384-key.pem -traditional -aes128 -passout pass:x -out "$pem/encrypted-proc-type.pem"
cat crl.pem crl-idp.pem >"$pem/crls.pem"
{ printf '\xef\xbb\xbfsubject=CN = admin\r\n'; sed 's/$/\r/' client.pem; echo trailing text; } >"$pem/bom-crlf-text.pem"
{ echo '-----BEGIN CERTIFICATE-----'; sed -n 2p client.pem; echo '-----END X509 CRL-----'; } >"$pem/mismatched-end.pem"
cp "$der/client.der" "$pem/der-instead.pem"

# Rules: rule lines, NUL, a selector byte (header kind, chain), then an
# optional end-entity certificate in DER (see src/rules.rs).
rules=$fuzz/corpus/rules
rm -rf "$rules"
mkdir -p "$rules"
seed() { printf "$2" >"$rules/$1"; }
seed common-name '* common-name\0\0'
seed specified '* specified admin\0\0'
seed sans '* san-rfc822-name\n* san-dns-name\n* san-ip-address\n* san-any\0\1'
seed fingerprint-client '@0 specified root\n* common-name\0\0'
seed fingerprint-anchor '@2 san-rfc822-name\n@1 common-name\0\2'
seed fingerprint-renewed '@3 specified renewed\n@2 specified current\0\2'
seed ncx-header '* specified a\x01b\n* common-name\0\3'
seed b64-header '* san-any\0\5'
{ printf '* common-name\n* san-any\0\4'; cat "$der/rsa.der"; } >"$rules/own-certificate"
echo "make-seeds: wrote $pki and the der, pem and rules seeds"
