package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herald-proxy/herald/bench"
)

type harness struct {
	o         options
	dir, root string
	heraldBin string
	caddyBin  string
	clkTck    float64
	ncpu      int            // CPUs of the machine (this process only sees CPU 0)
	fdLimit   int            // RLIMIT_NOFILE of the harness and the proxies
	topo      bench.Topology // backends; proxy ports are chosen per start
	h2cPort   int
	sinks     [2]int       // TCP sink backends (tcp-bytes)
	received  atomic.Int64 // bytes the sinks have read
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

func (h *harness) run() error {
	h.ncpu, _ = strconv.Atoi(os.Getenv(ncpuEnv))
	h.fdLimit = fdLimit()
	h.clkTck = 100
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			h.clkTck = v
		}
	}
	h.topo.Dir = h.dir
	h.topo.FDLimit = h.fdLimit
	// Every proxy must accept the idle scenario's connections at once (with
	// room for the harness's own sockets under the same limit).
	h.topo.MaxConns = min(max(h.o.idleConns+1000, 4096), h.fdLimit-2000)
	if h.o.idleConns > h.topo.MaxConns-500 {
		return fmt.Errorf("-idle-conns %d needs a higher open-file limit than %d", h.o.idleConns, h.fdLimit)
	}
	for i := range 2 {
		ln, err := startHTTP1Backend()
		if err != nil {
			return err
		}
		h.topo.HTTPBackends[i] = portOf(ln)
		ln, err = startEchoBackend()
		if err != nil {
			return err
		}
		h.topo.TCPBackends[i] = portOf(ln)
		ln, err = startSinkBackend(&h.received)
		if err != nil {
			return err
		}
		h.sinks[i] = portOf(ln)
	}
	ln, err := startH2CBackend()
	if err != nil {
		return err
	}
	h.h2cPort = portOf(ln)
	fmt.Printf("machine: %d CPUs; proxy under test pinned to CPU 1, load generators and backends (this process) to CPU 0; open-file limit %d\n", h.ncpu, h.fdLimit)
	fmt.Printf("backends: HTTP/1.1 %v, TCP echo %v, TCP sink %v, h2c %d; %d round(s) of %v (+%v warm-up)\n",
		h.topo.HTTPBackends, h.topo.TCPBackends, h.sinks, h.h2cPort, h.o.rounds, h.o.duration, h.o.warmup)

	var scenarios []bench.Scenario
	for _, name := range h.o.scenarios {
		s, err := h.scenario(name)
		if err != nil {
			return err
		}
		scenarios = append(scenarios, s)
	}
	rep := bench.Report{
		Machine:    h.machine(),
		Conditions: h.conditions(),
		Scenarios:  scenarios,
	}
	chart, out := h.o.chart, h.o.out
	if !filepath.IsAbs(chart) {
		chart = filepath.Join(h.root, chart)
	}
	if !filepath.IsAbs(out) {
		out = filepath.Join(h.root, out)
	}
	if rel, err := filepath.Rel(filepath.Dir(out), chart); err == nil {
		rep.ChartPath = filepath.ToSlash(rel)
	}
	if err := rep.Chart(chart); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	md := rep.Markdown()
	if err := os.WriteFile(out, []byte(md), 0o644); err != nil {
		return err
	}
	fmt.Println()
	fmt.Print(md)
	fmt.Printf("\nwrote %s and %s\n", out, chart)
	return nil
}

// loadText says how the scenario's load is generated, for the report.
func (h *harness) loadText(s bench.Spec) string {
	secs := int(h.o.duration.Round(time.Second) / time.Second)
	body := map[string]string{"/64k": "64 KiB body", "/1m": "1 MiB body"}[s.Path]
	if body == "" {
		body = "13-byte body"
	}
	switch s.ID {
	case "h2":
		return fmt.Sprintf("h2load -t1 -c10 -m10 -D %d: 10 connections × 10 concurrent streams = 100 streams, prior knowledge, GET /, 13-byte body; upstream HTTP/1.1 (direct: a Go h2c backend)", secs)
	case "routes-1000":
		return fmt.Sprintf("wrk -t1 -c%d -d%ds --latency, keep-alive, GET %s, %s; the proxies have %d prefix routes %s … %s in one virtual host "+
			"(herald: routes, nginx: `location` blocks, HAProxy: `use_backend … if { path_beg … }` rules, Caddy: routes with path matchers) "+
			"and the load hits the last one (direct: the backend itself)", s.Conns, secs, s.Path, body, bench.RouteCount, bench.RoutePrefix(0), bench.RoutePrefix(bench.RouteCount-1))
	case "tcp":
		return fmt.Sprintf("Go client in the harness, %d connections, 64-byte message, wait for the echo, %v", s.Conns, h.o.duration)
	case "tcp-bytes":
		return fmt.Sprintf("Go client in the harness, %d connections each writing 256 KiB chunks one way through the proxy to two sink backends (read and discard) for %v; bytes counted where the sinks read them", s.Conns, h.o.duration)
	case "tcp-connrate":
		return fmt.Sprintf("Go client in the harness, %d parallel loops of connect, 64-byte message, wait for the echo, close, for %v; latency is connect to close", s.Conns, h.o.duration)
	case "idle":
		return fmt.Sprintf("after a %v wrk -c50 warm-up, %d HTTP/1.1 keep-alive connections opened 100 at a time, each sends GET / and reads the response, then stays idle; "+
			"RSS is VmRSS summed over the proxy's processes before the first and 1 s after the last connection, and the proxy must still hold every connection afterwards", h.o.warmup, h.o.idleConns)
	}
	return fmt.Sprintf("wrk -t1 -c%d -d%ds --latency, keep-alive, GET %s, %s", s.Conns, secs, s.Path, body)
}

// scenario runs one scenario: per round, every proxy in turn, the starting
// proxy rotating each round so that none always runs first.
func (h *harness) scenario(id string) (bench.Scenario, error) {
	spec, err := bench.SpecByID(id)
	if err != nil {
		return bench.Scenario{}, err
	}
	s := bench.Scenario{Spec: spec, Load: h.loadText(spec)}
	if spec.Kind == bench.KindIdle && h.o.idleConns != 10000 {
		s.Note = fmt.Sprintf("This run held %d connections, not the issue's 10,000 (-quick or -idle-conns).", h.o.idleConns)
	}
	for _, p := range h.o.proxies {
		s.Results = append(s.Results, bench.ProxyRuns{Proxy: p, Skip: !bench.Applies(p, spec)})
	}
	for round := range h.o.rounds {
		for i := range s.Results {
			pr := &s.Results[(i+round)%len(s.Results)]
			if pr.Skip {
				continue
			}
			r, err := h.measure(spec, pr.Proxy)
			if err != nil {
				return s, fmt.Errorf("%s, %s, round %d: %w", id, pr.Proxy, round+1, err)
			}
			fmt.Printf("%-13s round %d %-8s %s\n", id, round+1, pr.Proxy, runLine(spec, r))
			pr.Runs = append(pr.Runs, r)
		}
	}
	return s, nil
}

// runLine is one run's figures for the progress output.
func runLine(s bench.Spec, r bench.Run) string {
	switch s.Kind {
	case bench.KindThroughput:
		return fmt.Sprintf("%9.1f MiB/s  cpu %.2fs/GiB  rss %d KiB  errors %d", r.MiBPerSec(), r.CPUPerGiB(), r.PeakRSSKiB, r.Errors)
	case bench.KindIdle:
		return fmt.Sprintf("%d idle connections: RSS %d → %d KiB, %.2f KiB/connection  errors %d", r.IdleConns, r.RSSBeforeKiB, r.RSSAfterKiB, r.KiBPerConn(), r.Errors)
	}
	mib := ""
	if r.Requests == 0 {
		mib = " (none completed: is the machine busy?)"
	}
	if s.Bytes {
		mib += fmt.Sprintf(" (%.1f MiB/s)", r.MiBPerSec())
	}
	return fmt.Sprintf("%9.0f %s%s  p50 %v p99 %v p99.9 %v  cpu %.2fs/100k  rss %d KiB  errors %d",
		r.RPS, s.Unit, mib, r.P50, r.P99, r.P999, r.CPUPer100k(), r.PeakRSSKiB, r.Errors)
}

// measure starts the proxy, warms up, runs the load once while reading the
// proxy's CPU time before and after, reads its peak RSS and stops it.
func (h *harness) measure(s bench.Spec, proxy string) (bench.Run, error) {
	var p *proc
	var port int
	t := h.topo
	if s.ID == "tcp-bytes" {
		t.TCPBackends = h.sinks
	}
	if s.ID == "routes-1000" {
		t.Routes = bench.RouteCount
	}
	if proxy == "direct" {
		switch {
		case s.ID == "h2":
			port = h.h2cPort
		case s.HTTP:
			port = t.HTTPBackends[0]
		default:
			port = t.TCPBackends[0]
		}
	} else {
		var err error
		for _, pp := range []*int{&t.HTTPPort, &t.H2Port, &t.TCPPort} {
			if *pp, err = freePort(); err != nil {
				return bench.Run{}, err
			}
		}
		if p, err = h.startProxy(proxy, t); err != nil {
			return bench.Run{}, err
		}
		defer p.stop()
		switch {
		case s.ID == "h2":
			port = t.H2Port
		case s.HTTP:
			port = t.HTTPPort
		default:
			port = t.TCPPort
		}
	}
	if s.Kind == bench.KindIdle {
		return h.idle(p, port)
	}
	if h.o.warmup > 0 {
		if _, err := h.load(s, port, h.o.warmup); err != nil {
			return bench.Run{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	var cpu0 float64
	if p != nil {
		cpu0 = h.cpuSeconds(p.cmd.Process.Pid)
	}
	r, err := h.load(s, port, h.o.duration)
	if err != nil {
		return bench.Run{}, err
	}
	if p != nil {
		r.CPUSeconds = h.cpuSeconds(p.cmd.Process.Pid) - cpu0
		r.PeakRSSKiB = sumStatus(p.cmd.Process.Pid, "VmHWM")
		select {
		case <-p.exited:
			return r, fmt.Errorf("%s exited during the run", proxy)
		default:
		}
	}
	return r, nil
}

// idle warms the proxy up with wrk, then opens h.o.idleConns keep-alive
// connections and reads the proxy's resident memory before and after.
func (h *harness) idle(p *proc, port int) (bench.Run, error) {
	if h.o.warmup > 0 {
		warm, _ := bench.SpecByID("http1")
		if _, err := h.load(warm, port, h.o.warmup); err != nil {
			return bench.Run{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	pid := p.cmd.Process.Pid
	r := bench.Run{RSSBeforeKiB: sumStatus(pid, "VmRSS")}
	conns, errs := openIdle(fmt.Sprintf("127.0.0.1:%d", port), h.o.idleConns, portsPerSource())
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(time.Second) // let the proxy finish its bookkeeping for the last ones
	r.RSSAfterKiB = sumStatus(pid, "VmRSS")
	r.PeakRSSKiB = sumStatus(pid, "VmHWM")
	r.IdleConns = len(conns)
	r.Errors = errs + int64(len(conns)-stillOpen(conns))
	select {
	case <-p.exited:
		return r, fmt.Errorf("proxy exited during the run")
	default:
	}
	return r, nil
}

// startProxy writes the proxy's config and starts it on CPU 1.
func (h *harness) startProxy(proxy string, t bench.Topology) (*proc, error) {
	var args, env []string
	ports := []int{t.HTTPPort, t.H2Port, t.TCPPort}
	write := func(name, cfg string) (string, error) {
		path := filepath.Join(h.dir, name)
		return path, os.WriteFile(path, []byte(cfg), 0o644)
	}
	switch proxy {
	case "herald":
		cfg, err := write("herald.yaml", bench.HeraldConfig(t))
		if err != nil {
			return nil, err
		}
		args = []string{h.heraldBin, "-c", cfg, "--concurrency", "1", "-l", "warning"}
	case "nginx":
		cfg, err := write("nginx.conf", bench.NginxConfig(t, streamModule))
		if err != nil {
			return nil, err
		}
		args = []string{"nginx", "-p", h.dir, "-c", cfg, "-e", filepath.Join(h.dir, "nginx-error.log")}
	case "haproxy":
		cfg, err := write("haproxy.cfg", bench.HAProxyConfig(t))
		if err != nil {
			return nil, err
		}
		args = []string{"haproxy", "-f", cfg, "-db"}
	case "caddy":
		cfg, err := write("caddy.json", bench.CaddyConfig(t))
		if err != nil {
			return nil, err
		}
		args = []string{h.caddyBin, "run", "--config", cfg}
		// One worker like the others; keep Caddy's data and config
		// directories in the scratch directory.
		env = append(os.Environ(), "GOMAXPROCS=1", "HOME="+h.dir, "XDG_DATA_HOME="+h.dir, "XDG_CONFIG_HOME="+h.dir)
		ports = ports[:2] // no layer 4
	default:
		return nil, fmt.Errorf("unknown proxy %q (direct, herald, nginx, haproxy, caddy)", proxy)
	}
	c := exec.Command("taskset", append([]string{"-c", "1"}, args...)...)
	c.Env = env
	logf, err := os.Create(filepath.Join(h.dir, proxy+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	c.Stdout, c.Stderr = logf, logf
	p, err := startProc(c)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", proxy, err)
	}
	if err := waitListening(ports, p); err != nil {
		p.stop()
		log, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	return p, nil
}

// load runs the scenario's load generator against 127.0.0.1:port for d.
func (h *harness) load(s bench.Spec, port int, d time.Duration) (bench.Run, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	switch s.ID {
	case "h2":
		logPath := filepath.Join(h.dir, "h2load.log")
		secs := max(1, int(d.Round(time.Second)/time.Second))
		out, err := exec.Command("h2load", "-t1", "-c10", "-m10", "-D", strconv.Itoa(secs),
			"--log-file="+logPath, "http://"+addr+s.Path).CombinedOutput()
		if err != nil {
			return bench.Run{}, fmt.Errorf("h2load: %w\n%s", err, out)
		}
		r, err := bench.ParseH2load(string(out))
		if err != nil {
			return r, err
		}
		log, err := os.ReadFile(logPath)
		if err != nil {
			return r, err
		}
		lat, err := bench.ParseH2loadLog(string(log))
		if err != nil {
			return r, err
		}
		r.P50, r.P99, r.P999 = bench.Percentile(lat, 50), bench.Percentile(lat, 99), bench.Percentile(lat, 99.9)
		return r, nil
	case "tcp", "tcp-connrate":
		start := time.Now()
		var n, errs int64
		var lat []time.Duration
		if s.ID == "tcp" {
			var err error
			if n, lat, errs, err = echoLoad(addr, s.Conns, 64, d); err != nil {
				return bench.Run{}, err
			}
		} else {
			n, lat, errs = connLoad(addr, s.Conns, 64, d)
		}
		el := time.Since(start)
		slices.Sort(lat)
		return bench.Run{Requests: n, Duration: el, RPS: float64(n) / el.Seconds(), Errors: errs,
			P50: bench.Percentile(lat, 50), P99: bench.Percentile(lat, 99), P999: bench.Percentile(lat, 99.9)}, nil
	case "tcp-bytes":
		n, el, errs, err := streamLoad(addr, s.Conns, d, &h.received)
		if err != nil {
			return bench.Run{}, err
		}
		return bench.Run{Bytes: n, Duration: el, Errors: errs}, nil
	}
	if !s.HTTP {
		return bench.Run{}, fmt.Errorf("unknown scenario %q", s.ID)
	}
	script := filepath.Join(h.dir, "done.lua")
	if err := os.WriteFile(script, []byte(bench.WrkScript), 0o644); err != nil {
		return bench.Run{}, err
	}
	out, err := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(s.Conns), "-d"+durArg(d), "--latency", "-s", script,
		"http://"+addr+s.Path).CombinedOutput()
	if err != nil {
		return bench.Run{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return bench.ParseWrk(string(out))
}

// durArg formats d for wrk's -d, which takes whole seconds (s, m, h units).
func durArg(d time.Duration) string {
	return fmt.Sprintf("%ds", max(1, int(d.Round(time.Second)/time.Second)))
}

// tree returns pid and its descendants (nginx's worker, taskset's exec'd
// proxy is pid itself).
func tree(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if st, err := bench.ParseProcStat(string(b)); err == nil {
			parent[n] = st.PPID
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		for c, pp := range parent {
			if pp == out[i] {
				out = append(out, c)
			}
		}
	}
	return out
}

// cpuSeconds is utime+stime of pid and its descendants, from /proc/<pid>/stat.
func (h *harness) cpuSeconds(pid int) float64 {
	var ticks int64
	for _, p := range tree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		if st, err := bench.ParseProcStat(string(b)); err == nil {
			ticks += st.UTimeTicks + st.STimeTicks
		}
	}
	return float64(ticks) / h.clkTck
}

// sumStatus sums a /proc/<pid>/status field (VmHWM, VmRSS) over pid and its
// descendants, in KiB.
func sumStatus(pid int, field string) int64 {
	var kib int64
	for _, p := range tree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		if v, err := bench.ParseStatusKiB(string(b), field); err == nil {
			kib += v
		}
	}
	return kib
}

func cmdLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

func (h *harness) machine() []string {
	model := "unknown"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	commit := cmdLine("git", "-C", h.root, "rev-parse", "--short", "HEAD")
	if st, err := exec.Command("git", "-C", h.root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		commit += " (with uncommitted changes)"
	}
	if h.o.heraldBin != "" {
		commit = "(prebuilt binary given with -herald-bin; the tree is at " + commit + ")"
	}
	return []string{
		fmt.Sprintf("CPUs (nproc): %d — %s", h.ncpu, model),
		"kernel: " + cmdLine("uname", "-sr"),
		"herald: git " + commit + ", " + runtime.Version(),
		"nginx: " + strings.TrimPrefix(cmdLine("nginx", "-v"), "nginx version: "),
		"HAProxy: " + cmdLine("haproxy", "-v"),
		"wrk: " + cmdLine("wrk", "-v"),
		"Caddy: " + h.caddyVersion(),
		"h2load: " + cmdLine("h2load", "--version"),
		"date: " + time.Now().UTC().Format("2006-01-02 15:04 UTC"),
	}
}

func (h *harness) caddyVersion() string {
	if !slices.Contains(h.o.proxies, "caddy") {
		return "not run"
	}
	// A go install build reports "unknown" as its version; the pin is the version.
	return caddyVersion + " (go install github.com/caddyserver/caddy/v2/cmd/caddy@" + caddyVersion + ", " + runtime.Version() + ")"
}

func (h *harness) conditions() []string {
	return []string{
		fmt.Sprintf("the machine has %d cores: the proxy under test runs on CPU 1 (`taskset -c 1`); the load generator (wrk, h2load, the Go TCP clients) and the Go backends share CPU 0", h.ncpu),
		fmt.Sprintf("%d round(s); in each round every proxy runs once, in turn, the starting proxy rotating per round; each run: fresh proxy process, %v warm-up, %v measured", h.o.rounds, h.o.warmup, h.o.duration),
		"every proxy: the same two HTTP/1.1 keep-alive backends (raw Go; 13-byte body, 64 KiB on /64k, 1 MiB on /1m) and two TCP echo backends (two TCP sinks for the throughput scenario), round robin, upstream keep-alive, no access log, one worker, loopback only",
		fmt.Sprintf("open-file limit %d for the harness and every proxy; every proxy is configured to accept %d connections at once; keep-alive timeouts are ≥ 300 s everywhere", h.fdLimit, h.topo.MaxConns),
		"herald: Envoy v3 YAML (STATIC clusters, ROUND_ROBIN, HCM codec AUTO, tcp_proxy), `--concurrency 1 -l warning`",
		"nginx: worker_processes 1, upstream keepalive 128, proxy_http_version 1.1, access_log off, keepalive_requests lifted, proxy_max_temp_file_size 0 (large responses streamed, not spooled to disk), `listen … http2` for h2c, stream module for TCP",
		"HAProxy: nbthread 1, http-reuse always, no log, `bind … proto h2` for h2c, mode tcp for TCP",
		"Caddy " + caddyVersion + ": JSON config, admin off, logs at ERROR, protocols h1 + h2c, reverse_proxy round robin with keep-alive (128 idle per host), GOMAXPROCS=1; HTTP scenarios only (stock Caddy has no layer-4 proxy)",
		"direct: the load generator straight to one backend (the h2c baseline is a Go net/http h2c backend)",
	}
}
