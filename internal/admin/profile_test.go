package admin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
)

// TestProfilers walks /cpuprofiler and /heapprofiler through Envoy's
// sequences (source/server/admin/profiling_handler.cc) and checks that the
// files written to profile_path are pprof profiles.
func TestProfilers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "herald.prof")
	opts := quiet
	opts.ProfilePath = path
	a := New(newFakeSource(), opts)

	steps := []struct {
		name       string
		method     string
		target     string
		wantStatus int
		wantBody   string
		// wantProfile: after this step path holds a profile with a
		// sample type of this name.
		wantProfile string
	}{
		{name: "cpu needs POST", method: "GET", target: "/cpuprofiler?enable=y", wantStatus: 405},
		{name: "cpu bad query", method: "POST", target: "/cpuprofiler?enable=maybe", wantStatus: 400, wantBody: "?enable=<y|n>\n"},
		{name: "cpu extra param", method: "POST", target: "/cpuprofiler?enable=y&x=1", wantStatus: 400, wantBody: "?enable=<y|n>\n"},
		{name: "cpu stop when stopped", method: "POST", target: "/cpuprofiler?enable=n", wantStatus: 200, wantBody: "OK\n"},
		{name: "cpu start", method: "POST", target: "/cpuprofiler?enable=y", wantStatus: 200, wantBody: "OK\n"},
		{name: "cpu start again", method: "POST", target: "/cpuprofiler?enable=y", wantStatus: 200, wantBody: "OK\n"},
		{name: "cpu stop", method: "POST", target: "/cpuprofiler?enable=n", wantStatus: 200, wantBody: "OK\n", wantProfile: "cpu"},
		{name: "heap stop when stopped", method: "POST", target: "/heapprofiler?enable=n", wantStatus: 400, wantBody: "Fail to stop heap profiler: not started"},
		{name: "heap start", method: "POST", target: "/heapprofiler?enable=y", wantStatus: 200, wantBody: "Starting heap profiler"},
		{name: "heap start again", method: "POST", target: "/heapprofiler?enable=y", wantStatus: 400, wantBody: "Fail to start heap profiler: already started"},
		{name: "heap stop", method: "POST", target: "/heapprofiler?enable=n", wantStatus: 200, wantBody: "Heap profiler stopped and data written to " + path, wantProfile: "inuse_space"},
	}
	for _, st := range steps {
		w := do(t, a, st.method, st.target)
		if w.Code != st.wantStatus {
			t.Fatalf("%s: status %d, want %d (body %q)", st.name, w.Code, st.wantStatus, w.Body.String())
		}
		if st.wantBody != "" && !strings.HasPrefix(w.Body.String(), st.wantBody) {
			t.Fatalf("%s: body %q, want prefix %q", st.name, w.Body.String(), st.wantBody)
		}
		if st.wantProfile != "" {
			f, err := os.Open(path)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			p, err := profile.Parse(f)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %s is not a pprof profile: %v", st.name, path, err)
			}
			var types []string
			for _, s := range p.SampleType {
				types = append(types, s.Type)
			}
			if !strings.Contains(strings.Join(types, ","), st.wantProfile) {
				t.Fatalf("%s: sample types %v, want %s", st.name, types, st.wantProfile)
			}
		}
	}

	w := do(t, a, "GET", "/heap_dump")
	if _, err := profile.ParseData(w.Body.Bytes()); w.Code != 200 || err != nil {
		t.Fatalf("/heap_dump: status %d, parse %v", w.Code, err)
	}
}
