// Package e2e holds the acceptance test: the whole product as separate
// processes on loopback (pkg/localstack), traffic played through the
// gateway by pkg/simulate, and every number compared with the plan's
// independently computed expectation. It needs the built binaries: run it
// with `make e2e-short` (part of make test) or `make e2e` (full size).
package e2e
