package admin

import (
	"fmt"
	"os"
	"runtime/pprof"
	"sync"

	nethttp "net/http"
)

// DefaultProfilePath is Envoy's admin.profile_path default.
const DefaultProfilePath = "/var/log/envoy/envoy.prof"

// profiler is the state behind /cpuprofiler and /heapprofiler. Envoy's
// ProfilingHandler (source/server/admin/profiling_handler.cc) drives
// gperftools; herald writes Go's pprof profiles to the same admin
// profile_path, readable with `go tool pprof`.
type profiler struct {
	mu      sync.Mutex
	cpuFile *os.File // non-nil while the CPU profiler runs
	heapOn  bool
}

func (a *Admin) profilePath() string {
	if a.opts.ProfilePath != "" {
		return a.opts.ProfilePath
	}
	return DefaultProfilePath
}

// enableParam returns the value of the only query parameter "enable" ("y" or
// "n"), or false when the query is anything else (Envoy answers 400 then).
func enableParam(r *nethttp.Request) (on bool, ok bool) {
	q := r.URL.Query()
	if len(q) != 1 || len(q["enable"]) == 0 {
		return false, false
	}
	switch q.Get("enable") {
	case "y":
		return true, true
	case "n":
		return false, true
	}
	return false, false
}

// serveCPUProfiler is Envoy's handlerCpuProfiler: ?enable=y starts the CPU
// profiler writing to profile_path, ?enable=n stops it (the profile is
// complete then). Starting a running profiler or stopping a stopped one is
// a no-op answering OK, as in Envoy.
func (a *Admin) serveCPUProfiler(w nethttp.ResponseWriter, r *nethttp.Request) {
	on, ok := enableParam(r)
	if !ok {
		writeText(w, nethttp.StatusBadRequest, "?enable=<y|n>\n")
		return
	}
	p := &a.prof
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.cpuFile == nil:
		f, err := os.Create(a.profilePath())
		if err != nil {
			a.log.Warn("cpu profiler", "error", err)
			writeText(w, nethttp.StatusInternalServerError, "failure to start the profiler")
			return
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			a.log.Warn("cpu profiler", "error", err)
			writeText(w, nethttp.StatusInternalServerError, "failure to start the profiler")
			return
		}
		p.cpuFile = f
	case !on && p.cpuFile != nil:
		pprof.StopCPUProfile()
		if err := p.cpuFile.Close(); err != nil {
			a.log.Warn("cpu profiler", "error", err)
		}
		p.cpuFile = nil
	}
	writeText(w, nethttp.StatusOK, "OK\n")
}

// serveHeapProfiler is Envoy's handlerHeapProfiler. Go samples heap
// allocations all the time, so ?enable=y only marks the profiler started;
// ?enable=n writes the heap profile to profile_path. Messages and statuses
// are Envoy's.
func (a *Admin) serveHeapProfiler(w nethttp.ResponseWriter, r *nethttp.Request) {
	on, ok := enableParam(r)
	if !ok {
		writeText(w, nethttp.StatusBadRequest, "?enable=<y|n>\n")
		return
	}
	p := &a.prof
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		if p.heapOn {
			writeText(w, nethttp.StatusBadRequest, "Fail to start heap profiler: already started")
			return
		}
		p.heapOn = true
		writeText(w, nethttp.StatusOK, "Starting heap profiler")
		return
	}
	if !p.heapOn {
		writeText(w, nethttp.StatusBadRequest, "Fail to stop heap profiler: not started")
		return
	}
	p.heapOn = false
	path := a.profilePath()
	if err := writeHeapProfile(path); err != nil {
		a.log.Warn("heap profiler", "error", err)
		writeText(w, nethttp.StatusInternalServerError, "Fail to write the heap profile: "+err.Error())
		return
	}
	writeText(w, nethttp.StatusOK, fmt.Sprintf("Heap profiler stopped and data written to %s. See https://pkg.go.dev/runtime/pprof for details.", path))
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// serveHeapDump is Envoy's /heap_dump: the current heap profile in the
// response body (pprof format; Envoy sends tcmalloc's).
func (a *Admin) serveHeapDump(w nethttp.ResponseWriter, _ *nethttp.Request) {
	w.Header().Set("content-type", "application/octet-stream")
	if err := pprof.Lookup("heap").WriteTo(w, 0); err != nil {
		a.log.Warn("heap dump", "error", err)
	}
}
