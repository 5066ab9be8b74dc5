// Package cql embeds the Cassandra schema: ordered, versioned migration
// files named NNNN_description.cql, applied by pkg/migrate. A migration is
// never edited once released; a change is a new file.
package cql

import "embed"

// FS holds the migration files.
//
//go:embed *.cql
var FS embed.FS
