#!/usr/bin/env bash
# The product's Kubernetes Secrets, made from files that never enter git or
# an image.
#
#   create-secrets.sh init DIR              make what is missing in DIR (random
#                                           secrets, a first signing key, role
#                                           names and passwords); never overwrites
#   create-secrets.sh apply [-n NS] DIR     create or update the Secrets in NS
#                                           (default analytics) from DIR
#
# DIR holds (mode 0700; keep it in your secret store, not in the repository):
#   identity-secret               HMAC secret of the identity headers (>= 16 bytes)
#   signing-keys/*.pem            Ed25519 keys signing access tokens (PKCS#8 PEM)
#   cassandra/username, password          the services' role (SELECT, MODIFY)
#   cassandra-migrate/username, password  the migrate Job's role (CREATE, ALTER)
#   consul-tokens/<name>          Consul ACL token of each service (gateway, collection,
#                                 config, processing, acquisition, behavior) and Job
#                                 (reprocess, deadletters):
#                                 made by consul-tokens.sh DIR once Consul runs
#   smtp/username, password       optional: config-svc's login at the SMTP server
#                                 (analytics-infra's smtp-addr) that sends its e-mail
#
# Secrets made (the manifests in ../base refer to these names):
#   analytics-identity            identity-secret
#   analytics-signing-keys        one key per .pem file, mounted by config-svc
#   analytics-cassandra           username, password
#   analytics-cassandra-migrate   username, password
#   analytics-consul              one key per service: its Consul token
#   analytics-smtp                username, password (only when DIR/smtp/ has them)
#
# `apply` updates Secrets in place: signing keys are picked up by running
# config-svc pods without a restart (the kubelet refreshes the mounted files
# within about a minute, config rereads them every 30s); the other values are
# environment variables and take effect at the next rollout
# (kubectl -n analytics rollout restart deployment).
set -euo pipefail

usage() { sed -n '2,35p' "$0" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
cmd=$1
shift

init() {
	local dir=$1
	umask 077
	mkdir -p "$dir/signing-keys" "$dir/cassandra" "$dir/cassandra-migrate"
	local f
	[[ -s $dir/identity-secret ]] || { openssl rand -base64 48 | tr -d '\n' >"$dir/identity-secret"; echo "made $dir/identity-secret"; }
	if ! compgen -G "$dir/signing-keys/*.pem" >/dev/null; then
		f="$dir/signing-keys/key-$(date -u +%Y%m%dT%H%M%SZ).pem"
		openssl genpkey -algorithm ed25519 -out "$f"
		echo "made $f"
	fi
	[[ -s $dir/cassandra/username ]] || printf analytics_app >"$dir/cassandra/username"
	[[ -s $dir/cassandra-migrate/username ]] || printf analytics_migrate >"$dir/cassandra-migrate/username"
	for f in cassandra/password cassandra-migrate/password; do
		[[ -s $dir/$f ]] || { openssl rand -hex 24 | tr -d '\n' >"$dir/$f"; echo "made $dir/$f"; }
	done
	echo "create the Cassandra roles with these names and passwords (docs/operations.md, 'Cassandra roles') and the Consul tokens ($(dirname "$0")/consul-tokens.sh $dir), then run: $0 apply $dir"
}

apply() {
	local ns=analytics
	if [[ ${1:-} == -n ]]; then
		ns=$2
		shift 2
	fi
	[[ $# -eq 1 ]] || usage
	local dir=$1 f
	for f in identity-secret cassandra/username cassandra/password cassandra-migrate/username cassandra-migrate/password; do
		[[ -s $dir/$f ]] || { echo "$dir/$f is missing or empty (run: $0 init $dir)" >&2; exit 1; }
	done
	for f in gateway collection config processing acquisition behavior reprocess deadletters; do
		[[ -s $dir/consul-tokens/$f ]] || { echo "$dir/consul-tokens/$f is missing or empty (run: $(dirname "$0")/consul-tokens.sh $dir)" >&2; exit 1; }
	done
	if (($(tr -d '\r\n' <"$dir/identity-secret" | wc -c) < 16)); then
		echo "$dir/identity-secret must be at least 16 bytes" >&2
		exit 1
	fi
	local keys=()
	for f in "$dir"/signing-keys/*; do
		[[ -e $f ]] || continue
		if [[ $f != *.pem ]] || ! openssl pkey -in "$f" -noout -text 2>/dev/null | head -1 | grep -q ED25519; then
			echo "$f is not a PEM Ed25519 private key named *.pem" >&2
			exit 1
		fi
		keys+=("--from-file=$(basename "$f")=$f")
	done
	((${#keys[@]} > 0)) || { echo "no signing key in $dir/signing-keys (run: $0 init $dir)" >&2; exit 1; }

	# Values without a trailing newline, in a private scratch directory.
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	tr -d '\r\n' <"$dir/identity-secret" >"$tmp/identity-secret"
	mkdir -p "$tmp/consul-tokens"
	for f in gateway collection config processing acquisition behavior reprocess deadletters; do
		tr -d '\r\n' <"$dir/consul-tokens/$f" >"$tmp/consul-tokens/$f"
	done
	for f in cassandra cassandra-migrate; do
		mkdir -p "$tmp/$f"
		tr -d '\r\n' <"$dir/$f/username" >"$tmp/$f/username"
		tr -d '\r\n' <"$dir/$f/password" >"$tmp/$f/password"
	done

	kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
	put() {
		kubectl -n "$ns" create secret generic "$@" --dry-run=client -o yaml |
			kubectl label --local -f - app.kubernetes.io/part-of=acme-analytics -o yaml |
			kubectl -n "$ns" apply -f -
	}
	# cookieless-secret: only for the collection pods of releases before
	# 2026-12-05, which require the key, until the release is rolled out
	# everywhere and the file deleted (docs/releases.md).
	local legacy=()
	if [[ -s $dir/cookieless-secret ]]; then
		tr -d '\r\n' <"$dir/cookieless-secret" >"$tmp/cookieless-secret"
		legacy=("--from-file=cookieless-secret=$tmp/cookieless-secret")
	fi
	put analytics-identity --from-file=identity-secret="$tmp/identity-secret" ${legacy[@]+"${legacy[@]}"}
	put analytics-signing-keys "${keys[@]}"
	put analytics-cassandra --from-file=username="$tmp/cassandra/username" --from-file=password="$tmp/cassandra/password"
	put analytics-cassandra-migrate --from-file=username="$tmp/cassandra-migrate/username" --from-file=password="$tmp/cassandra-migrate/password"
	# Optional: without it config-svc sends mail unauthenticated, or none.
	if [[ -s $dir/smtp/username && -s $dir/smtp/password ]]; then
		mkdir -p "$tmp/smtp"
		tr -d '\r\n' <"$dir/smtp/username" >"$tmp/smtp/username"
		tr -d '\r\n' <"$dir/smtp/password" >"$tmp/smtp/password"
		put analytics-smtp --from-file=username="$tmp/smtp/username" --from-file=password="$tmp/smtp/password"
	fi
	local t=$tmp/consul-tokens
	put analytics-consul --from-file=gateway="$t/gateway" --from-file=collection="$t/collection" --from-file=config="$t/config" --from-file=processing="$t/processing" --from-file=acquisition="$t/acquisition" --from-file=behavior="$t/behavior" --from-file=reprocess="$t/reprocess" --from-file=deadletters="$t/deadletters"
}

case $cmd in
init) [[ $# -eq 1 ]] || usage; init "$1" ;;
apply) apply "$@" ;;
*) usage ;;
esac
