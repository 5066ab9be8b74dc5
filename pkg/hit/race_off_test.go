//go:build !race

package hit

const raceEnabled = false
