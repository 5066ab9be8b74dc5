//go:build tools

// Package consul pins the Consul agent version built by deploy/tools/consul/build.sh.
package consul

import _ "github.com/hashicorp/consul"
