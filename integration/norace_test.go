//go:build !race

package integration_test

// raceEnabled: the test binary was built without -race, so the binaries
// under test are too.
const raceEnabled = false
