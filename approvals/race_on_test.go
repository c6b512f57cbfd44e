//go:build race

package approvals

// raceEnabled: the race detector slows everything several times over.
const raceEnabled = true
