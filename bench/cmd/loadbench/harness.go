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
	"time"

	"github.com/herald-proxy/herald/bench"
)

type harness struct {
	o         options
	dir, root string
	heraldBin string
	clkTck    float64
	ncpu      int            // CPUs of the machine (this process only sees CPU 0)
	topo      bench.Topology // backends; proxy ports are chosen per start
	h2cPort   int
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

func (h *harness) run() error {
	h.ncpu, _ = strconv.Atoi(os.Getenv(ncpuEnv))
	h.clkTck = 100
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			h.clkTck = v
		}
	}
	h.topo.Dir = h.dir
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
	}
	ln, err := startH2CBackend()
	if err != nil {
		return err
	}
	h.h2cPort = portOf(ln)
	fmt.Printf("machine: %d CPUs; proxy under test pinned to CPU 1, load generators and backends (this process) to CPU 0\n", h.ncpu)
	fmt.Printf("backends: HTTP/1.1 %v, TCP echo %v, h2c %d; %d round(s) of %v (+%v warm-up)\n",
		h.topo.HTTPBackends, h.topo.TCPBackends, h.h2cPort, h.o.rounds, h.o.duration, h.o.warmup)

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
	chart := filepath.Join(h.root, h.o.chart)
	out := filepath.Join(h.root, h.o.out)
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

// scenario runs one scenario: per round, every proxy in turn, the starting
// proxy rotating each round so that none always runs first.
func (h *harness) scenario(name string) (bench.Scenario, error) {
	s := bench.Scenario{Name: name}
	secs := int(h.o.duration.Round(time.Second) / time.Second)
	switch name {
	case "http1":
		s.Name, s.Unit = "HTTP/1.1 small responses", "req/s"
		s.Load = fmt.Sprintf("wrk -t1 -c50 -d%ds --latency, keep-alive, GET /, 13-byte body", secs)
	case "tcp":
		s.Name, s.Unit = "TCP echo round trips", "round trips/s"
		s.Load = fmt.Sprintf("Go client in the harness, 50 connections, 64-byte message, wait for the echo, %v", h.o.duration)
	case "h2":
		s.Name, s.Unit = "HTTP/2 downstream (h2c)", "req/s"
		s.Load = fmt.Sprintf("h2load -t1 -c10 -m10 -D %d, prior knowledge; upstream HTTP/1.1 (direct: a Go h2c backend)", secs)
	default:
		return s, fmt.Errorf("unknown scenario %q (http1, tcp, h2)", name)
	}
	for _, p := range h.o.proxies {
		s.Results = append(s.Results, bench.ProxyRuns{Proxy: p})
	}
	for round := range h.o.rounds {
		for i := range s.Results {
			pr := &s.Results[(i+round)%len(s.Results)]
			r, err := h.measure(name, pr.Proxy)
			if err != nil {
				return s, fmt.Errorf("%s, %s, round %d: %w", name, pr.Proxy, round+1, err)
			}
			fmt.Printf("%-26s round %d %-8s %10.0f %s  p50 %v p99 %v p99.9 %v  cpu %.2fs/100k  rss %d KiB  errors %d\n",
				s.Name, round+1, pr.Proxy, r.RPS, s.Unit, r.P50, r.P99, r.P999, r.CPUPer100k(), r.PeakRSSKiB, r.Errors)
			pr.Runs = append(pr.Runs, r)
		}
	}
	return s, nil
}

// measure starts the proxy, warms up, runs the load once while reading the
// proxy's CPU time before and after, reads its peak RSS and stops it.
func (h *harness) measure(scenario, proxy string) (bench.Run, error) {
	var p *proc
	var port int
	if proxy == "direct" {
		switch scenario {
		case "http1":
			port = h.topo.HTTPBackends[0]
		case "tcp":
			port = h.topo.TCPBackends[0]
		case "h2":
			port = h.h2cPort
		}
	} else {
		t := h.topo
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
		port = map[string]int{"http1": t.HTTPPort, "tcp": t.TCPPort, "h2": t.H2Port}[scenario]
	}
	if h.o.warmup > 0 {
		if _, err := h.load(scenario, port, h.o.warmup); err != nil {
			return bench.Run{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	var cpu0 float64
	if p != nil {
		cpu0 = h.cpuSeconds(p.cmd.Process.Pid)
	}
	r, err := h.load(scenario, port, h.o.duration)
	if err != nil {
		return bench.Run{}, err
	}
	if p != nil {
		r.CPUSeconds = h.cpuSeconds(p.cmd.Process.Pid) - cpu0
		r.PeakRSSKiB = peakRSS(p.cmd.Process.Pid)
		select {
		case <-p.exited:
			return r, fmt.Errorf("%s exited during the run", proxy)
		default:
		}
	}
	return r, nil
}

// startProxy writes the proxy's config and starts it on CPU 1.
func (h *harness) startProxy(proxy string, t bench.Topology) (*proc, error) {
	var args []string
	switch proxy {
	case "herald":
		cfg := filepath.Join(h.dir, "herald.yaml")
		if err := os.WriteFile(cfg, []byte(bench.HeraldConfig(t)), 0o644); err != nil {
			return nil, err
		}
		args = []string{h.heraldBin, "-c", cfg, "--concurrency", "1", "-l", "warning"}
	case "nginx":
		cfg := filepath.Join(h.dir, "nginx.conf")
		if err := os.WriteFile(cfg, []byte(bench.NginxConfig(t, streamModule)), 0o644); err != nil {
			return nil, err
		}
		args = []string{"nginx", "-p", h.dir, "-c", cfg, "-e", filepath.Join(h.dir, "nginx-error.log")}
	case "haproxy":
		cfg := filepath.Join(h.dir, "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(bench.HAProxyConfig(t)), 0o644); err != nil {
			return nil, err
		}
		args = []string{"haproxy", "-f", cfg, "-db"}
	default:
		return nil, fmt.Errorf("unknown proxy %q (direct, herald, nginx, haproxy)", proxy)
	}
	c := exec.Command("taskset", append([]string{"-c", "1"}, args...)...)
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
	if err := waitListening([]int{t.HTTPPort, t.H2Port, t.TCPPort}, p); err != nil {
		p.stop()
		log, _ := os.ReadFile(logf.Name())
		return nil, fmt.Errorf("%w\n%s", err, log)
	}
	return p, nil
}

// load runs the scenario's load generator against 127.0.0.1:port for d.
func (h *harness) load(scenario string, port int, d time.Duration) (bench.Run, error) {
	switch scenario {
	case "http1":
		script := filepath.Join(h.dir, "done.lua")
		if err := os.WriteFile(script, []byte(bench.WrkScript), 0o644); err != nil {
			return bench.Run{}, err
		}
		out, err := exec.Command("wrk", "-t1", "-c50", "-d"+durArg(d), "--latency", "-s", script,
			fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput()
		if err != nil {
			return bench.Run{}, fmt.Errorf("wrk: %w\n%s", err, out)
		}
		return bench.ParseWrk(string(out))
	case "h2":
		logPath := filepath.Join(h.dir, "h2load.log")
		secs := max(1, int(d.Round(time.Second)/time.Second))
		out, err := exec.Command("h2load", "-t1", "-c10", "-m10", "-D", strconv.Itoa(secs),
			"--log-file="+logPath, fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput()
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
	case "tcp":
		start := time.Now()
		n, lat, errs, err := echoLoad(fmt.Sprintf("127.0.0.1:%d", port), 50, 64, d)
		if err != nil {
			return bench.Run{}, err
		}
		el := time.Since(start)
		slices.Sort(lat)
		return bench.Run{Requests: n, Duration: el, RPS: float64(n) / el.Seconds(), Errors: errs,
			P50: bench.Percentile(lat, 50), P99: bench.Percentile(lat, 99), P999: bench.Percentile(lat, 99.9)}, nil
	}
	return bench.Run{}, fmt.Errorf("unknown scenario %q", scenario)
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

// peakRSS sums VmHWM over pid and its descendants, in KiB.
func peakRSS(pid int) int64 {
	var kib int64
	for _, p := range tree(pid) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		if v, err := bench.ParseVmHWM(string(b)); err == nil {
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
	return []string{
		fmt.Sprintf("CPUs (nproc): %d — %s", h.ncpu, model),
		"kernel: " + cmdLine("uname", "-sr"),
		"herald: git " + commit + ", " + runtime.Version(),
		"nginx: " + strings.TrimPrefix(cmdLine("nginx", "-v"), "nginx version: "),
		"HAProxy: " + cmdLine("haproxy", "-v"),
		"wrk: " + cmdLine("wrk", "-v"),
		"h2load: " + cmdLine("h2load", "--version"),
		"date: " + time.Now().UTC().Format("2006-01-02 15:04 UTC"),
	}
}

func (h *harness) conditions() []string {
	return []string{
		fmt.Sprintf("the machine has %d cores: the proxy under test runs on CPU 1 (`taskset -c 1`); the load generator (wrk, h2load, the TCP client) and the Go backends share CPU 0", h.ncpu),
		fmt.Sprintf("%d round(s); in each round every proxy runs once, in turn, the starting proxy rotating per round; each run: fresh proxy process, %v warm-up, %v measured", h.o.rounds, h.o.warmup, h.o.duration),
		"every proxy: the same two HTTP/1.1 keep-alive backends (raw Go, 13-byte body) and two TCP echo backends, round robin, upstream keep-alive, no access log, one worker, loopback only",
		"herald: Envoy v3 YAML (STATIC clusters, ROUND_ROBIN, HCM codec AUTO, tcp_proxy), `--concurrency 1 -l warning`",
		"nginx: worker_processes 1, upstream keepalive 128, proxy_http_version 1.1, access_log off, keepalive_requests lifted, `listen … http2` for h2c, stream module for TCP",
		"HAProxy: nbthread 1, http-reuse always, no log, `bind … proto h2` for h2c, mode tcp for TCP",
		"direct: the load generator straight to one backend (the h2c baseline is a Go net/http h2c backend)",
	}
}
