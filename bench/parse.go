package bench

import (
	"bufio"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Run is one measured run of one proxy in one scenario.
type Run struct {
	Requests   int64         // requests (or round trips) completed
	Duration   time.Duration // measured duration
	RPS        float64       // requests per second
	P50        time.Duration
	P99        time.Duration
	P999       time.Duration
	Errors     int64   // socket errors, timeouts and non-2xx/3xx responses
	CPUSeconds float64 // proxy CPU (user+system) during the run, all its processes
	PeakRSSKiB int64   // sum of VmHWM of the proxy's processes

	Bytes int64 // bytes moved in Duration: response bytes read (wrk), bytes received by the sink (TCP throughput)

	// The idle scenario: connections held open and the proxy's summed VmRSS
	// before they were opened and once they were all idle.
	IdleConns    int
	RSSBeforeKiB int64
	RSSAfterKiB  int64
}

// MiBPerSec is Bytes per second of Duration in MiB/s (0 if unknown).
func (r Run) MiBPerSec() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(r.Bytes) / (1 << 20) / r.Duration.Seconds()
}

// CPUPerGiB is the proxy's CPU seconds per GiB moved (0 if unknown).
func (r Run) CPUPerGiB() float64 {
	if r.Bytes == 0 {
		return 0
	}
	return r.CPUSeconds / float64(r.Bytes) * (1 << 30)
}

// KiBPerConn is the growth of the proxy's resident memory per idle
// connection (0 if none were held).
func (r Run) KiBPerConn() float64 {
	if r.IdleConns == 0 {
		return 0
	}
	return float64(r.RSSAfterKiB-r.RSSBeforeKiB) / float64(r.IdleConns)
}

// CPUPer100k is the proxy's CPU seconds per 100,000 requests (0 if unknown).
func (r Run) CPUPer100k() float64 {
	if r.Requests == 0 {
		return 0
	}
	return r.CPUSeconds / float64(r.Requests) * 1e5
}

// ParseWrk reads wrk's output with the WrkScript done line. Requests/sec comes
// from wrk's own summary line; requests, duration, percentiles and errors from
// the script's line; "Non-2xx or 3xx responses" is added to the errors.
func ParseWrk(out string) (Run, error) {
	var r Run
	var haveScript, haveRPS bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, "Requests/sec:")), 64)
			if err != nil {
				return Run{}, fmt.Errorf("wrk: bad Requests/sec line %q: %v", line, err)
			}
			r.RPS, haveRPS = v, true
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(line, "Non-2xx or 3xx responses:")), 10, 64)
			if err != nil {
				return Run{}, fmt.Errorf("wrk: bad Non-2xx line %q: %v", line, err)
			}
			r.Errors += v
		case strings.HasPrefix(line, "HARNESS "):
			kv, err := parseKV(strings.TrimPrefix(line, "HARNESS "))
			if err != nil {
				return Run{}, fmt.Errorf("wrk: script line: %v", err)
			}
			r.Requests = kv["requests"]
			r.Bytes = kv["bytes"]
			r.Duration = time.Duration(kv["duration_us"]) * time.Microsecond
			r.P50 = time.Duration(kv["p50_us"]) * time.Microsecond
			r.P99 = time.Duration(kv["p99_us"]) * time.Microsecond
			r.P999 = time.Duration(kv["p999_us"]) * time.Microsecond
			r.Errors += kv["connect"] + kv["read"] + kv["write"] + kv["timeout"]
			haveScript = true
		}
	}
	if !haveScript {
		return Run{}, fmt.Errorf("wrk: no HARNESS line from the done hook in output:\n%s", out)
	}
	if !haveRPS {
		if r.Duration <= 0 {
			return Run{}, fmt.Errorf("wrk: no Requests/sec line and no duration")
		}
		r.RPS = float64(r.Requests) / r.Duration.Seconds()
	}
	return r, nil
}

// parseKV parses "a=1 b=2" into integers.
func parseKV(s string) (map[string]int64, error) {
	m := make(map[string]int64)
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("field %q is not key=value", f)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("field %q: %v", f, err)
		}
		m[k] = n
	}
	return m, nil
}

// ParseH2load reads h2load's summary: requests/s from the "finished in" line
// and the succeeded and failed/errored/timeout counts from "requests:".
func ParseH2load(out string) (Run, error) {
	var r Run
	var haveFinished, haveRequests bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "finished in "):
			// finished in 2.00s, 49975.50 req/s, 1.86MB/s
			parts := strings.Split(strings.TrimPrefix(line, "finished in "), ",")
			if len(parts) < 2 {
				return Run{}, fmt.Errorf("h2load: bad finished line %q", line)
			}
			d, err := time.ParseDuration(strings.TrimSpace(parts[0]))
			if err != nil {
				return Run{}, fmt.Errorf("h2load: bad duration in %q: %v", line, err)
			}
			v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(parts[1]), " req/s"), 64)
			if err != nil {
				return Run{}, fmt.Errorf("h2load: bad req/s in %q: %v", line, err)
			}
			r.Duration, r.RPS, haveFinished = d, v, true
		case strings.HasPrefix(line, "requests:"):
			// requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout
			for _, f := range strings.Split(strings.TrimPrefix(line, "requests:"), ",") {
				fs := strings.Fields(f)
				if len(fs) != 2 {
					continue
				}
				n, err := strconv.ParseInt(fs[0], 10, 64)
				if err != nil {
					return Run{}, fmt.Errorf("h2load: bad count %q: %v", f, err)
				}
				switch fs[1] {
				case "succeeded":
					r.Requests = n
				case "failed", "errored", "timeout":
					r.Errors += n
				}
			}
			haveRequests = true
		}
	}
	if !haveFinished || !haveRequests {
		return Run{}, fmt.Errorf("h2load: summary lines missing in output:\n%s", out)
	}
	return r, nil
}

// ParseH2loadLog reads h2load --log-file output (one request per line:
// start time, status, duration in µs, tab-separated) and returns the
// request durations sorted, skipping requests with a non-2xx/3xx status.
func ParseH2loadLog(log string) ([]time.Duration, error) {
	var ds []time.Duration
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if len(fs) != 3 {
			return nil, fmt.Errorf("h2load log: bad line %q", sc.Text())
		}
		status, err1 := strconv.Atoi(fs[1])
		us, err2 := strconv.ParseInt(fs[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("h2load log: bad line %q", sc.Text())
		}
		if status < 200 || status >= 400 {
			continue
		}
		ds = append(ds, time.Duration(us)*time.Microsecond)
	}
	slices.Sort(ds)
	return ds, nil
}

// Percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method, or 0 for an empty slice.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p*float64(len(sorted))/100 - 1e-9)) // 99.9*1000/100 is not exact
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// ProcStat is what the harness reads from /proc/<pid>/stat.
type ProcStat struct {
	PPID       int
	UTimeTicks int64
	STimeTicks int64
}

// ParseProcStat parses /proc/<pid>/stat (proc(5)). The command name, field 2,
// is in parentheses and may contain spaces and parentheses, so fields are
// counted after the last ')': ppid is field 4, utime 14, stime 15.
func ParseProcStat(s string) (ProcStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ProcStat{}, fmt.Errorf("proc stat: no ')' in %q", s)
	}
	fs := strings.Fields(s[i+1:])
	// fs[0] is field 3 (state).
	if len(fs) < 13 {
		return ProcStat{}, fmt.Errorf("proc stat: %d fields after comm, want >= 13", len(fs))
	}
	ppid, err := strconv.Atoi(fs[1])
	if err != nil {
		return ProcStat{}, fmt.Errorf("proc stat: ppid %q: %v", fs[1], err)
	}
	ut, err := strconv.ParseInt(fs[11], 10, 64)
	if err != nil {
		return ProcStat{}, fmt.Errorf("proc stat: utime %q: %v", fs[11], err)
	}
	st, err := strconv.ParseInt(fs[12], 10, 64)
	if err != nil {
		return ProcStat{}, fmt.Errorf("proc stat: stime %q: %v", fs[12], err)
	}
	return ProcStat{PPID: ppid, UTimeTicks: ut, STimeTicks: st}, nil
}

// ParseVmHWM returns the VmHWM (peak resident set) of /proc/<pid>/status in KiB.
func ParseVmHWM(status string) (int64, error) { return ParseStatusKiB(status, "VmHWM") }

// ParseStatusKiB returns the field (VmHWM, VmRSS, …) of /proc/<pid>/status,
// in KiB.
func ParseStatusKiB(status, field string) (int64, error) {
	for line := range strings.Lines(status) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			fs := strings.Fields(v)
			if len(fs) != 2 || fs[1] != "kB" {
				return 0, fmt.Errorf("proc status: bad %s line %q", field, strings.TrimSpace(line))
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("proc status: no %s line", field)
}

// Summary is the median and range of one figure over the rounds.
type Summary struct {
	Median, Min, Max float64
	N                int
}

// Summarize returns the median (mean of the middle two for an even count),
// minimum and maximum of vs; the zero Summary for none.
func Summarize(vs []float64) Summary {
	if len(vs) == 0 {
		return Summary{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{Median: med, Min: s[0], Max: s[n-1], N: n}
}
