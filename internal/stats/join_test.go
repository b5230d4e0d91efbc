package stats

import "testing"

func TestJoinPrefix(t *testing.T) {
	tests := []struct{ prefix, want string }{
		{prefix: "a", want: "a.rbac."},
		{prefix: "a.", want: "a.rbac."},
		{prefix: "", want: "rbac."},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			if got := JoinPrefix(tc.prefix, "rbac."); got != tc.want {
				t.Errorf("JoinPrefix(%q) = %q, want %q", tc.prefix, got, tc.want)
			}
		})
	}
}
