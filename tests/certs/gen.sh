#!/bin/sh
# Regenerates the TEST-ONLY certificates in this directory:
#   ca.pem                        a test CA (valid 100 years)
#   localhost.pem, localhost-key.pem  server cert for DNS:localhost, IP:127.0.0.1
#   wrong.pem, wrong-key.pem      server cert for DNS:wrong.example (same CA)
# The CA key is not kept. Requires openssl.
set -eu
cd "$(dirname "$0")"
days=36500
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" \
  -keyout "$tmp/ca-key.pem" -out ca.pem \
  -subj "/CN=llm-router test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash"

leaf() { # name cn san
  openssl req -newkey rsa:2048 -nodes -sha256 \
    -keyout "$1-key.pem" -out "$tmp/$1.csr" -subj "/CN=$2"
  cat > "$tmp/$1.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$3
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
  openssl x509 -req -sha256 -days "$days" -in "$tmp/$1.csr" \
    -CA ca.pem -CAkey "$tmp/ca-key.pem" -set_serial "0x$(openssl rand -hex 16)" \
    -extfile "$tmp/$1.ext" -out "$1.pem"
  chmod 644 "$1-key.pem"
}

leaf localhost localhost "DNS:localhost,IP:127.0.0.1"
leaf wrong wrong.example "DNS:wrong.example"

openssl verify -CAfile ca.pem localhost.pem wrong.pem
