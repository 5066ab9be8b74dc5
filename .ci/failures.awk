# failures.awk reads a `go test -v` log and prints what the failed tests
# said, and nothing of the tests that passed: make e2e-short shows only
# the tests' names and results, and a failure's reason must reach CI's
# log without being cut out of the middle of every test's messages.
#
# A message is a line "    name_test.go:NN: ..." and the deeper-indented
# lines that continue it, each cut to 2,000 characters. They are kept per
# top-level test (the name before any "/") and printed when the test ends
# in "--- FAIL"; a test still running when the binary died (a panic, the
# -timeout) is printed at the end, with the first 80 lines of the panic.

function top(name) { sub(/\/.*/, "", name); return name }

/^=== (RUN|NAME|CONT) / { current = top($3); p = 0; next }

/^--- FAIL: / {
	name = top($3)
	print "--- FAIL: " name
	printf "%s", said[name]
	delete said[name]; delete running[name]
	p = 0; next
}

/^--- (PASS|SKIP): / { name = top($3); delete said[name]; delete running[name]; p = 0; next }

/^panic: / { panicking = 1 }
panicking { if (panicLines++ < 80) panics = panics substr($0, 1, 2000) "\n"; next }

/^ +[A-Za-z0-9_]+_test\.go:[0-9]+:/ {
	p = 1; running[current] = 1
	said[current] = said[current] substr($0, 1, 2000) "\n"; next
}
p && /^        / { said[current] = said[current] substr($0, 1, 2000) "\n"; next }
{ p = 0 }

END {
	for (name in running) {
		print "--- did not finish: " name
		printf "%s", said[name]
	}
	printf "%s", panics
}
