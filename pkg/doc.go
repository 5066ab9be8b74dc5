// Package pkg is the root of the shared libraries used by every service.
// It holds no code itself; see the sub-packages.
package pkg
