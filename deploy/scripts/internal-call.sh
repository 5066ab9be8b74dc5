#!/usr/bin/env bash
# Calls an internal endpoint of a service (one the gateway never routes, such
# as processing's reprocessing API) as the operator: with the identity headers
# of the system tenant in the service role, signed with the identity secret
# the way pkg/tenant signs them. The signature is valid for two minutes.
#
#   IDENTITY_SECRET=... deploy/scripts/internal-call.sh METHOD URL [JSON-BODY]
#
# e.g. with `kubectl -n analytics port-forward deploy/processing 8083`:
#   deploy/scripts/internal-call.sh POST http://127.0.0.1:8083/internal/v1/reprocess \
#     '{"property_id":"…","from":"2026-01-01","to":"2026-01-31","rules":"current"}'
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: IDENTITY_SECRET=... $0 METHOD URL [JSON-BODY]" >&2; exit 2; }
: "${IDENTITY_SECRET:?set IDENTITY_SECRET to the identity secret of the services}"
method=$1 url=$2 body=${3:-}
tenant=system user=${OPERATOR:-operator} role=service ts=$(date +%s)
# Fields are length-prefixed: "<len>:<value>;" for tenant, user, role, timestamp.
msg="${#tenant}:${tenant};${#user}:${user};${#role}:${role};${#ts}:${ts};"
sig=$(printf '%s' "$msg" | openssl dgst -sha256 -hmac "$IDENTITY_SECRET" -r | cut -d' ' -f1)
args=(-sS --fail-with-body -X "$method"
	-H "X-Tenant-Id: $tenant" -H "X-User-Id: $user" -H "X-User-Role: $role"
	-H "X-Identity-Timestamp: $ts" -H "X-Identity-Signature: $sig")
if [[ -n $body ]]; then
	args+=(-H "Content-Type: application/json" --data "$body")
fi
curl "${args[@]}" "$url"
echo
