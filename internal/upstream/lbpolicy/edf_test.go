package lbpolicy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

type fixedInverse []float64

func (f *fixedInverse) Inverse(i int) float64 { return (*f)[i] }

// TestEDF: picks follow the weights exactly over a period, ties go to the
// lower index, the seed starts the schedule that many picks in, and a
// pick does not allocate.
func TestEDF(t *testing.T) {
	tests := []struct {
		name    string
		weights []float64
		seed    uint64
		picks   int
		want    []int
	}{
		{name: "weighted period", weights: []float64{3, 1}, picks: 4, want: []int{0, 0, 0, 1}},
		{name: "equal weights tie to lower index", weights: []float64{1, 1, 1}, picks: 3, want: []int{0, 1, 2}},
		{name: "seed skips picks", weights: []float64{1, 1, 1}, seed: 4, picks: 3, want: []int{1, 2, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := make(fixedInverse, len(tt.weights))
			for i, w := range tt.weights {
				inv[i] = 1 / w
			}
			e := NewEDF(len(inv), &inv, tt.seed)
			var got []int
			for range tt.picks {
				got = append(got, e.Pick(&inv))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("picks (-want +got):\n%s", diff)
			}
			if n := testing.AllocsPerRun(100, func() { e.Pick(&inv) }); n != 0 {
				t.Errorf("Pick allocates %v times, want 0", n)
			}
		})
	}
}
