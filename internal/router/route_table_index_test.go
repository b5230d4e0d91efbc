package router

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestIndexedMatchEqualsLinearScan checks that indexing runs of plain routes
// keeps Envoy's first-match-wins: Match must pick what a scan of every route
// in order picks, for tables mixing plain, case-insensitive, header and
// duplicate routes.
func TestIndexedMatchEqualsLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	segs := []string{"", "/", "/a", "/a/", "/a/b", "/ab", "/b", "/b/c", "/A"}
	pick := func() string { return segs[rng.IntN(len(segs))] }
	totalBlocks := 0
	for round := 0; round < 20; round++ {
		var b strings.Builder
		b.WriteString("virtual_hosts:\n- name: v\n  domains: [\"*\"]\n  routes:\n")
		for i := 0; i < 60; i++ {
			match := ""
			switch rng.IntN(20) {
			case 0:
				match = fmt.Sprintf(`{prefix: %q, case_sensitive: false}`, pick())
			case 1:
				match = fmt.Sprintf(`{prefix: %q, headers: [{name: x-a, present_match: true}]}`, pick())
			case 2, 3, 4:
				p := pick()
				if p == "" {
					p = "/"
				}
				match = fmt.Sprintf(`{path: %q}`, p)
			default:
				match = fmt.Sprintf(`{prefix: %q}`, pick())
			}
			fmt.Fprintf(&b, "  - {name: r%d, match: %s, route: {cluster: c}}\n", i, match)
		}
		tbl := mustBuild(t, b.String())
		vh := tbl.VirtualHosts()[0]
		blocks := 0
		for _, s := range vh.steps {
			if s.block != nil {
				blocks++
			}
		}
		totalBlocks += blocks
		for _, p := range []string{"/", "/a", "/a/", "/a/b", "/a/bc", "/ab", "/abc", "/b", "/b/c/d", "/A/x", "/z", "/a?x"} {
			for _, hdr := range [][]string{nil, {"x-a", "1"}} {
				h := req("h", p, hdr...)
				got, _ := tbl.Match(h)
				var want *Route
				path := stripQueryAndFragment(p)
				for _, r := range vh.routes {
					if r.match.matches(h, p, path) {
						want = r
						break
					}
				}
				if got != want {
					t.Fatalf("round %d, path %q, headers %v: Match = %v, linear scan = %v", round, p, hdr, name(got), name(want))
				}
			}
		}
	}
	if totalBlocks < 20 {
		t.Fatalf("only %d indexed blocks built; the test would prove little", totalBlocks)
	}
}

func name(r *Route) string {
	if r == nil {
		return "<nil>"
	}
	return r.Name()
}
