//go:build race

package hit

// raceEnabled: the race detector adds allocations of its own.
const raceEnabled = true
