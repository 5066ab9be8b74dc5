module github.com/acme/analytics/cql

go 1.26.7
