#!/usr/bin/env bash
# Prints the kid of an Ed25519 signing key: its RFC 7638 JWK thumbprint, the
# value config-svc publishes in the JWKS and that -signing-kid (the
# signing-kid key of the analytics-infra ConfigMap, or SIGNING_KID in
# deploy/compose/.env) pins.
#
#   deploy/scripts/signing-kid.sh deploy/compose/secrets/signing-keys/key-20260101T000000.pem
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 KEY.pem" >&2; exit 2; }
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
# The last 32 bytes of the DER SubjectPublicKeyInfo are the raw public key.
x=$(openssl pkey -in "$1" -pubout -outform DER | tail -c 32 | b64url)
printf '{"crv":"Ed25519","kty":"OKP","x":"%s"}' "$x" | openssl dgst -sha256 -binary | b64url
echo
