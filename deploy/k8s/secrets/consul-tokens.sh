#!/usr/bin/env bash
# Makes the Consul ACL policy and token of each of the product's services and
# writes each token's secret to DIR/consul-tokens/<name>, for
# create-secrets.sh apply to put in Secret analytics-consul.
#
#   consul-tokens.sh DIR
#
# A service's token may register (and deregister) only its own service name,
# and read the catalogue: the gateway and the pipeline watch the instances of
# the services they call. So a pod that is not config-svc cannot register as
# config-svc and have the gateway send it logins and tokens; without ACLs any
# pod reaching a node's agent could. The reprocess Job's token only reads;
# the deadletters Job's reads only config-svc's instances (replay finds
# config-svc; list uses no Consul at all).
#
# The consul command runs in the first Consul server pod with the bootstrap
# token the Helm chart made (acls.manageSystemACLs, Secret
# consul-bootstrap-acl-token); set CONSUL to run another consul (with
# CONSUL_HTTP_ADDR and CONSUL_HTTP_TOKEN in the environment), as
# deploy/validate's test does against a dev agent. Existing policies and
# token files are kept: it makes only what is missing.
set -euo pipefail

[[ $# -eq 1 ]] || { sed -n '2,21p' "$0" >&2; exit 2; }
dir=$1

if [[ -n ${CONSUL:-} ]]; then
	consul() { $CONSUL "$@"; }
else
	# The bootstrap token goes to the pod on stdin, never in a command line
	# (which the process lists and the API server's audit log would show).
	consul() {
		{ kubectl -n consul get secret consul-bootstrap-acl-token -o jsonpath='{.data.token}' | base64 -d; echo; } |
			kubectl -n consul exec -i consul-server-0 -- sh -c 'read -r CONSUL_HTTP_TOKEN; export CONSUL_HTTP_TOKEN; exec consul "$@"' consul "$@"
	}
fi

# rules prints the ACL rules of a name's policy: a service registers itself
# and reads the catalogue; reprocess only reads it; deadletters reads only
# config-svc's instances (and the nodes they run on: Consul leaves out of a
# health answer every instance on a node the token may not read).
rules() {
	case $1 in
	reprocess) ;;
	deadletters)
		printf 'service "config" { policy = "read" }\nnode_prefix "" { policy = "read" }\n'
		return
		;;
	*) printf 'service "%s" { policy = "write" }\n' "$1" ;;
	esac
	printf 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }\n'
}

umask 077
mkdir -p "$dir/consul-tokens"
for name in gateway collection config processing acquisition behavior reprocess deadletters; do
	out=$dir/consul-tokens/$name
	[[ -s $out ]] && continue
	policy=analytics-$name
	if ! consul acl policy read -name "$policy" >/dev/null 2>&1; then
		consul acl policy create -name "$policy" -description "acme-analytics $name" -rules "$(rules "$name")" >/dev/null
	fi
	consul acl token create -description "acme-analytics $name" -policy-name "$policy" -format=json |
		sed -n 's/^ *"SecretID": *"\([^"]*\)".*/\1/p' | tr -d '\n' >"$out.tmp"
	[[ -s $out.tmp ]] || { rm -f "$out.tmp"; echo "no token made for $name" >&2; exit 1; }
	mv "$out.tmp" "$out"
	echo "made $out"
done
echo "now run: deploy/k8s/secrets/create-secrets.sh apply $dir"
