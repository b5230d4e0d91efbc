package configerr

import "testing"

func TestSuggest(t *testing.T) {
	tests := []struct {
		name       string
		word       string
		candidates []string
		want       string
	}{
		{name: "one letter doubled", word: "ROUND_ROBBIN", candidates: []string{"LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"}, want: "ROUND_ROBIN"},
		{name: "case differs only", word: "round_robin", candidates: []string{"ROUND_ROBIN"}, want: "ROUND_ROBIN"},
		{name: "swapped letters", word: "lb_polciy", candidates: []string{"name", "lb_policy"}, want: "lb_policy"},
		{name: "missing letter", word: "conect_timeout", candidates: []string{"connect_timeout", "per_connection_buffer_limit_bytes"}, want: "connect_timeout"},
		{name: "too far", word: "bananas", candidates: []string{"clusters", "listeners"}, want: ""},
		{name: "short word allows one edit", word: "nme", candidates: []string{"name", "type"}, want: "name"},
		{name: "short word rejects two edits", word: "nm", candidates: []string{"name"}, want: ""},
		{name: "exact candidate is skipped", word: "name", candidates: []string{"name"}, want: ""},
		{name: "one letter suggests nothing", word: "b", candidates: []string{"a"}, want: ""},
		{name: "no candidates", word: "name", candidates: nil, want: ""},
		{name: "closest wins over first", word: "clusterz", candidates: []string{"cluster_s", "clusters"}, want: "clusters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Suggest(tc.word, tc.candidates); got != tc.want {
				t.Errorf("Suggest(%q) = %q, want %q", tc.word, got, tc.want)
			}
		})
	}
}
