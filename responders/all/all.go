// Package all imports every responder backend, so that each registers
// itself with responders.Register and responders.Build can make any of
// them. A program that builds backends from a configuration imports it
// for its side effect:
//
//	import _ "github.com/meshward/meshward/responders/all"
package all

import (
	_ "github.com/meshward/meshward/responders/dns"  // dns sinkhole
	_ "github.com/meshward/meshward/responders/exec" // operator commands
	_ "github.com/meshward/meshward/responders/nft"  // kernel firewall
)
