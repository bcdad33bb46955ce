// Package stix reads and writes STIX 2.1, the format threat intelligence
// is exchanged in.
//
// In: ParsePattern turns the subset of STIX patterning Meshward uses
// (equality on addresses, networks, domains, URLs and file hashes, joined
// by OR) into indicators, and refuses anything else with the offset and
// what is unsupported. Reader streams a bundle (or a TAXII envelope)
// object by object with a json.Decoder, yielding an Entry for each
// indicator of an `indicator` object (pattern_type stix) or a
// cyber-observable, skipping and counting every other type. A malformed
// object stops the read with an *ObjectError naming its index, id and
// field; ReadAll gives all the entries or none.
//
// Out: Mapper turns indicator reports, sightings and policies into STIX
// objects (indicator, sighting, identity, attack-pattern, relationship,
// with a TLP 2.0 marking) whose ids are UUIDv5 of the content and whose
// times come from the data, so the same data always exports the same
// bytes; BundleWriter writes them as one bundle without holding it.
//
// The objects are plain structs rather than a STIX library's types: the
// export is written object by object, and the read keeps only the fields
// Meshward uses. The package does no I/O of its own beyond the readers and
// writers it is handed, and starts no goroutine.
package stix
