#!/bin/bash
# mkcerts.sh — a throw-away test PKI for TLS and cert-auth tests.
#
#   tools/mkcerts.sh DIR
#
# Creates in DIR (made if missing):
#   ca.crt ca.key                          self-signed test CA
#   server.crt server.key                  CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
#   client-postgres.crt client-postgres.key   CN=postgres  (clientAuth)
#   client-md5user.crt  client-md5user.key    CN=md5user   (clientAuth)
# All keys are ECDSA P-256, certificates are valid for 10 days, keys are mode
# 600.  Prints nothing but errors; never prompts (works as root or not).
# Nothing here is fit for anything but tests: the CA key sits next to its certs.
set -euo pipefail

die() { echo "mkcerts: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: mkcerts.sh DIR"
command -v openssl >/dev/null || die "openssl not found"
dir=$1
mkdir -p "$dir"
cd "$dir"

DAYS=10
# Keys are created with a restrictive umask so that they are never readable by others.
umask 077
# A config file of our own, so no system openssl.cnf prompts or defaults leak in.
export OPENSSL_CONF=/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

newkey() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>"$tmp/err" \
        || { cat "$tmp/err" >&2; die "cannot create key $1"; }
    chmod 600 "$1"
}

# run CMD…: runs openssl quietly, showing its output only when it fails
run() {
    "$@" >"$tmp/out" 2>&1 || { cat "$tmp/out" >&2; die "failed: $*"; }
}

# CA
newkey ca.key
cat >"$tmp/ca.ext" <<EXT
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EXT
# CSR + x509 -extfile rather than req -x509 -addext: works the same on OpenSSL 1.1 and 3.
run openssl req -new -key ca.key -out "$tmp/ca.csr" -subj "/CN=pgfunnel test CA"
run openssl x509 -req -in "$tmp/ca.csr" -signkey ca.key -out ca.crt -days "$DAYS" -sha256 \
    -extfile "$tmp/ca.ext"

# leaf NAME CN EXTFILE: key NAME.key, certificate NAME.crt signed by the CA
leaf() {
    local name=$1 cn=$2 ext=$3
    newkey "$name.key"
    run openssl req -new -key "$name.key" -out "$tmp/$name.csr" -subj "/CN=$cn"
    run openssl x509 -req -in "$tmp/$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -CAserial "$tmp/ca.srl" -out "$name.crt" -days "$DAYS" -sha256 -extfile "$ext"
}

cat >"$tmp/server.ext" <<EXT
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
EXT
cat >"$tmp/client.ext" <<EXT
basicConstraints = CA:false
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
EXT

leaf server localhost "$tmp/server.ext"
leaf client-postgres postgres "$tmp/client.ext"
leaf client-md5user md5user "$tmp/client.ext"
chmod 644 ca.crt server.crt client-postgres.crt client-md5user.crt
