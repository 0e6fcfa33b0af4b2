#!/bin/sh
# Makes the certificates the TLS tests use, into OUTDIR, with the openssl command:
#   ca.crt, ca.key          a self-signed certificate authority
#   server.crt, server.key  signed by the CA, for localhost and the loopback addresses
#   client.crt, client.key  signed by the CA, subject CN=course client,O=tornado-stages
#   other.key               a key that matches neither certificate
# Nothing here is committed: ctest runs this as the "tls-certs" fixture before any TLS test.
# Usage: make_certs.sh OUTDIR
set -eu

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/tornado-certs-XXXXXX")
trap 'rm -rf "$work"' EXIT

key() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# The CA: a v3 certificate that may sign others.
key "$work/ca.key"
openssl req -x509 -new -key "$work/ca.key" -sha256 -days 3650 \
  -subj "/O=tornado-stages/CN=tornado-stages test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$work/ca.crt"

# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by the CA.
sign() {
  key "$work/$1.key"
  openssl req -new -key "$work/$1.key" -subj "$2" -out "$work/$1.csr"
  printf '%s\n' "$3" > "$work/$1.ext"
  openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -sha256 -days 3650 -extfile "$work/$1.ext" -out "$work/$1.crt" 2>/dev/null
}

sign server "/O=tornado-stages/CN=localhost" \
  "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.2,IP:127.0.0.3,IP:::1"
# RFC 2253 writes the subject most significant last: CN=course client,O=tornado-stages.
sign client "/O=tornado-stages/CN=course client" \
  "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
key "$work/other.key"

for f in ca.crt ca.key server.crt server.key client.crt client.key other.key; do
  mv "$work/$f" "$out/$f"
done
chmod 600 "$out"/*.key
