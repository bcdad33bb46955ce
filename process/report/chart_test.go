package report

import (
	"errors"
	"testing"

	"github.com/meshward/meshward/process"
)

func TestStageChartPlotsEachDuration(t *testing.T) {
	s := sampleReport().Summary
	svg, err := StageChart(s, process.StageTriage)
	if err != nil {
		t.Fatal(err)
	}
	// Three acknowledgements (30 s, 60 s, 1200 s): a step line of at
	// least one rise per incident.
	if segs, _ := plotted(t, svg); segs < 2*len(s.Samples[process.StageTriage]) {
		t.Errorf("the CDF of triage has %d segments, want at least %d", segs, 2*len(s.Samples[process.StageTriage]))
	}
	if _, err := StageChart(s, process.StageCompliance); !errors.Is(err, ErrNoData) {
		t.Errorf("a stage without durations: %v, want ErrNoData", err)
	}
	if _, err := StageChart(s, "teatime"); err == nil || errors.Is(err, ErrNoData) {
		t.Errorf("an unknown stage: %v, want it refused by name", err)
	}
}

func TestBreachesChartOneBarPerDay(t *testing.T) {
	s := sampleReport().Summary
	svg, err := BreachesChart(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, filled := plotted(t, svg); filled != len(s.BreachesByDay) {
		t.Errorf("%d bars, want %d (one per day)", filled, len(s.BreachesByDay))
	}
	if _, err := BreachesChart(process.Summary{}); !errors.Is(err, ErrNoData) {
		t.Errorf("no breaches: %v, want ErrNoData", err)
	}
}
