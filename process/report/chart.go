package report

import (
	"errors"
	"fmt"

	"github.com/meshward/meshward/process"
)

// StageChart draws the cumulative distribution of one stage's durations
// of a summary (its Samples), as an SVG. It fails when the stage is not
// one of process.AllStages or has no durations in the summary.
func StageChart(s process.Summary, st process.Stage) ([]byte, error) {
	if !st.Valid() {
		return nil, fmt.Errorf("stage %q: want one of %v", st, process.AllStages)
	}
	v := s.Samples[st]
	if len(v) == 0 {
		return nil, fmt.Errorf("stage %s: %w", st, ErrNoData)
	}
	return cdfChart(st, v)
}

// BreachesChart draws the summary's breaches per day, as an SVG. It fails
// when there were none in the period.
func BreachesChart(s process.Summary) ([]byte, error) {
	if len(s.BreachesByDay) == 0 {
		return nil, fmt.Errorf("breaches: %w", ErrNoData)
	}
	return breachChart(s.BreachesByDay)
}

// ErrNoData is a chart with nothing to draw in the summary's period.
var ErrNoData = errors.New("nothing measured in the period")
