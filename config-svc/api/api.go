// Package api holds config-svc's API contract: the OpenAPI 3 document of
// every endpoint, embedded so the service and its tests use the same file.
package api

import _ "embed"

// OpenAPI is openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte
