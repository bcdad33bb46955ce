package node

import (
	"time"

	"github.com/meshward/meshward/admin"
	"github.com/meshward/meshward/intel"
)

// Segmentation returns the mesh's zones, flows and the quarantines active
// at now, as this node has applied them.
func (a operatorAPI) Segmentation(now time.Time) intel.Segmentation {
	return a.n.deps.Consensus.Segmentation(now)
}

var _ admin.SegmentationSource = operatorAPI{}
