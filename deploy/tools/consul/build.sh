#!/usr/bin/env bash
# Builds the real Consul agent once and links it as bin/consul.
#
# The binary is versioned and kept in the Go bin directory, outside any clone,
# because a cold build takes minutes and gigabytes of memory: CI clones afresh
# on every run and reuses it from there. Go's build cache makes a rebuild after
# a version bump quick. Consul is BUSL-1.1; it is a dev/test tool only and
# never enters a service's module graph.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
version=$(cd "$here" && GOWORK=off go list -m -f "{{.Version}}" github.com/hashicorp/consul | sed "s/^v//")
gobin=$(go env GOBIN)
[ -n "$gobin" ] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
target="$gobin/consul-$version"
if [ ! -x "$target" ]; then
	echo "building consul $version into $target (once; takes a few minutes)" >&2
	mkdir -p "$gobin"
	(cd "$here" && GOWORK=off go build -o "$target.tmp" github.com/hashicorp/consul)
	mv "$target.tmp" "$target"
fi
mkdir -p "$root/bin"
ln -sf "$target" "$root/bin/consul"
