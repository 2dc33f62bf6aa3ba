#!/bin/sh
# Regenerates the OpenSSL-made fixtures used by src/ca/tests (test-only keys).
# istio-cacerts/ mimics Istio's tools/certs Makefile output: an RSA root and an
# RSA intermediate whose keys are PKCS#1 ("RSA PRIVATE KEY"), as in Istio's
# samples/certs. Valid for 100 years so the fixtures do not rot.
set -eu
cd "$(dirname "$0")"
d=istio-cacerts
mkdir -p "$d"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/root.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
O = Istio
CN = Root CA
[ext]
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
subjectKeyIdentifier = hash
CNF
cat > "$tmp/int.cnf" <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
O = Istio
CN = Intermediate CA
L = cluster1
[ext]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
subjectAltName = URI:spiffe://cluster.local/ns/istio-system/sa/citadel
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl genrsa -traditional -out "$tmp/root-key.pem" 2048
openssl req -x509 -new -key "$tmp/root-key.pem" -config "$tmp/root.cnf" -days 36500 -sha256 -out "$d/root-cert.pem"
openssl genrsa -traditional -out "$d/ca-key.pem" 2048
openssl req -new -key "$d/ca-key.pem" -config "$tmp/int.cnf" -out "$tmp/int.csr"
openssl x509 -req -in "$tmp/int.csr" -CA "$d/root-cert.pem" -CAkey "$tmp/root-key.pem" -CAserial "$tmp/root.srl" -CAcreateserial \
  -extfile "$tmp/int.cnf" -extensions ext -days 36500 -sha256 -out "$d/ca-cert.pem"
cat "$d/ca-cert.pem" "$d/root-cert.pem" > "$d/cert-chain.pem"
# A SEC1 ("EC PRIVATE KEY") P-256 key, as `openssl ecparam -genkey` writes it.
openssl ecparam -name prime256v1 -genkey -noout -out ec-sec1-key.pem
