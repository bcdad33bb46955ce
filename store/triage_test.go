package store

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTriage(t *testing.T) {
	for _, o := range openers() {
		t.Run(o.name, func(t *testing.T) {
			s := o.open(t)
			at := time.Unix(1000, 0).UTC()
			r, err := s.Assign("d1", "alice", "oncall", at)
			if err != nil || r.Assignee != "alice" || r.AssignedBy != "oncall" || !r.AssignedAt.Equal(at) {
				t.Fatalf("Assign: %+v, %v", r, err)
			}
			// Concurrent comments are all kept, in one record.
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					if _, err := s.AddComment("d1", CommentRecord{By: "oncall", Text: fmt.Sprintf("c%d", i), At: at.Add(time.Duration(i) * time.Second)}); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			m, err := s.TriageFor([]string{"d1", "d2", "", strings.Repeat("x", MaxAckIDLen+1)})
			if err != nil || len(m) != 1 || len(m["d1"].Comments) != 8 || m["d1"].Assignee != "alice" {
				t.Fatalf("TriageFor: %+v, %v", m, err)
			}
			if r, err := s.Assign("d1", "", "oncall", at); err != nil || r.Assignee != "" || len(r.Comments) != 8 {
				t.Fatalf("clear assignment: %+v, %v", r, err)
			}
			for _, bad := range []struct {
				id string
				c  CommentRecord
			}{
				{"", CommentRecord{By: "a", Text: "x", At: at}},
				{"d1", CommentRecord{By: "a", Text: "", At: at}},
				{"d1", CommentRecord{By: "a", Text: strings.Repeat("x", MaxCommentLen+1), At: at}},
				{"d1", CommentRecord{By: "", Text: "x", At: at}},
				{"d1", CommentRecord{By: "a", Text: "x"}},
			} {
				if _, err := s.AddComment(bad.id, bad.c); err == nil {
					t.Errorf("AddComment(%q, %+v) accepted", bad.id, bad.c)
				}
			}
			if _, err := s.Assign("d1", strings.Repeat("x", MaxAssigneeLen+1), "a", at); err == nil {
				t.Error("Assign accepted an over-long assignee")
			}
			for i := range MaxComments - 8 {
				if _, err := s.AddComment("d3", CommentRecord{By: "a", Text: "x", At: at.Add(time.Duration(i))}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.AddComment("d3", CommentRecord{By: "a", Text: "x", At: at}); err != nil {
				t.Fatal(err)
			}
			for range 7 {
				s.AddComment("d3", CommentRecord{By: "a", Text: "x", At: at})
			}
			if _, err := s.AddComment("d3", CommentRecord{By: "a", Text: "over", At: at}); !errors.Is(err, ErrTriageFull) {
				t.Fatalf("comment %d: %v, want ErrTriageFull", MaxComments+1, err)
			}
			if m, _ := s.TriageFor([]string{"d3"}); len(m["d3"].Comments) != MaxComments {
				t.Fatalf("d3 keeps %d comments, want %d", len(m["d3"].Comments), MaxComments)
			}
			// d1 was last changed at +7s, d3 at +(MaxComments-9)ns.
			n, err := s.PruneTriage(at.Add(time.Second))
			if err != nil || n != 1 {
				t.Fatalf("PruneTriage: %d, %v, want 1", n, err)
			}
			if m, _ := s.TriageFor([]string{"d1", "d3"}); len(m) != 1 || m["d1"].Detection != "d1" {
				t.Fatalf("after prune: %+v", m)
			}
		})
	}
}
