// Package intel is Meshward's common data schema: indicators, sightings,
// policies, and the signed envelope that carries them between nodes.
//
// It is pure code. It performs no I/O, starts no goroutines, and imports no
// other Meshward package; every other package imports it. Anything that
// crosses a node boundary is defined here, so that a node of one version can
// read what a node of another version wrote.
//
// Envelopes are signed over the exact bytes that travel (see Seal and Open):
// relaying a message or replaying it through anti-entropy never re-encodes
// it, so a signature checked once stays valid on every hop.
package intel
