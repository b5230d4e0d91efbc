package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// wrkOutput is wrk 4.1.0's output for `wrk -t1 -c50 -d2s --latency -s done.lua`.
const wrkOutput = `Running 2s test @ http://127.0.0.1:40000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  339.95us   6.71ms   78.82%
    Req/Sec    36.48k     2.11k   39.43k    70.00%
  Latency Distribution
     50%    1.08ms
     75%    1.25ms
     90%    1.47ms
     99%    2.22ms
  72596 requests in 2.00s, 5.88MB read
Requests/sec:  36296.41
Transfer/sec:      2.94MB
HARNESS requests=72596 bytes=6165504 duration_us=2000123 p50_us=1083 p99_us=2223 p999_us=5104 connect=0 read=0 write=0 status=0 timeout=0
`

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    Run
		wantErr string
	}{
		{
			name: "complete",
			out:  wrkOutput,
			want: Run{Requests: 72596, Bytes: 6165504, Duration: 2000123 * time.Microsecond, RPS: 36296.41,
				P50: 1083 * time.Microsecond, P99: 2223 * time.Microsecond, P999: 5104 * time.Microsecond},
		},
		{
			name: "errors and non-2xx are added",
			out: strings.Replace(wrkOutput, "connect=0 read=0 write=0 status=0 timeout=0", "connect=1 read=2 write=3 status=7 timeout=4", 1) +
				"  Non-2xx or 3xx responses: 7\n",
			want: Run{Requests: 72596, Bytes: 6165504, Duration: 2000123 * time.Microsecond, RPS: 36296.41,
				P50: 1083 * time.Microsecond, P99: 2223 * time.Microsecond, P999: 5104 * time.Microsecond, Errors: 17},
		},
		{
			name: "rate from the script when wrk's line is missing",
			out:  "HARNESS requests=1000 duration_us=2000000 p50_us=1 p99_us=2 p999_us=3 connect=0 read=0 write=0 status=0 timeout=0\n",
			want: Run{Requests: 1000, Duration: 2 * time.Second, RPS: 500, P50: time.Microsecond, P99: 2 * time.Microsecond, P999: 3 * time.Microsecond},
		},
		{name: "no script line", out: "Requests/sec:  36296.41\n", wantErr: "no HARNESS line"},
		{name: "bad rate", out: "Requests/sec:  fast\n", wantErr: "bad Requests/sec"},
		{name: "bad script field", out: "HARNESS requests=many\n", wantErr: "script line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseWrk(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

const h2loadOutput = `starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration for buffer setup.
Application protocol: h2c

finished in 2.00s, 37848.50 req/s, 1.48MB/s
requests: 75697 total, 75797 started, 75697 done, 75690 succeeded, 4 failed, 2 errored, 1 timeout
status codes: 75690 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 2.95MB (3095406) total, 296.52KB (303637) headers (space savings 94.74%), 985.52KB (1009181) data
                     min         max         mean         sd        +/- sd
time for request:      189us     16.38ms      2.62ms      1.92ms    78.89%
`

func TestParseH2load(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    Run
		wantErr string
	}{
		{name: "complete", out: h2loadOutput, want: Run{Requests: 75690, Duration: 2 * time.Second, RPS: 37848.5, Errors: 7}},
		{name: "no summary", out: "starting benchmark...\n", wantErr: "summary lines missing"},
		{name: "bad rate", out: "finished in 2.00s, lots req/s, 1MB/s\n", wantErr: "bad req/s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseH2load(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseH2loadLogAndPercentile(t *testing.T) {
	log := "1700000000123456\t200\t300\n1700000000123457\t200\t100\n1700000000123458\t503\t1\n1700000000123459\t200\t200\n"
	ds, err := ParseH2loadLog(log)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{100 * time.Microsecond, 200 * time.Microsecond, 300 * time.Microsecond}
	if len(ds) != len(want) {
		t.Fatalf("got %v, want %v (the 503 skipped)", ds, want)
	}
	for i := range want {
		if ds[i] != want[i] {
			t.Fatalf("got %v, want %v", ds, want)
		}
	}
	if _, err := ParseH2loadLog("1\t200\n"); err == nil {
		t.Fatal("short line: want an error")
	}
	hundred := make([]time.Duration, 1000)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{name: "empty", sorted: nil, p: 50, want: 0},
		{name: "one", sorted: want[:1], p: 99.9, want: 100 * time.Microsecond},
		{name: "median of three", sorted: want, p: 50, want: 200 * time.Microsecond},
		{name: "p99 of 1000", sorted: hundred, p: 99, want: 990 * time.Millisecond},
		{name: "p99.9 of 1000", sorted: hundred, p: 99.9, want: 999 * time.Millisecond},
		{name: "p100", sorted: hundred, p: 100, want: 1000 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Fatalf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestParseProcStat(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    ProcStat
		wantErr bool
	}{
		{
			name: "nginx worker",
			stat: "14760 (nginx) S 14758 14758 14700 0 -1 4194624 2110 0 0 0 62 151 0 0 20 0 1 0 123456 60000000 3900 18446744073709551615\n",
			want: ProcStat{PPID: 14758, UTimeTicks: 62, STimeTicks: 151},
		},
		{
			name: "comm with spaces and parentheses",
			stat: "42 (a) b (c)) R 1 42 42 0 -1 0 0 0 0 0 7 9 0 0 20 0 1 0 1 1 1\n",
			want: ProcStat{PPID: 1, UTimeTicks: 7, STimeTicks: 9},
		},
		{name: "truncated", stat: "42 (x) R 1 2 3", wantErr: true},
		{name: "no comm", stat: "42 x R 1", wantErr: true},
		{name: "bad utime", stat: "42 (x) R 1 42 42 0 -1 0 0 0 0 0 u 9 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcStat(tt.stat)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseVmHWM(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		want    int64
		wantErr bool
	}{
		{name: "present", status: "Name:\tnginx\nVmPeak:\t  60000 kB\nVmHWM:\t   15272 kB\nVmRSS:\t   15000 kB\n", want: 15272},
		{name: "missing (kernel thread)", status: "Name:\tkthreadd\n", wantErr: true},
		{name: "bad unit", status: "VmHWM:\t 15 MB\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVmHWM(tt.status)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %d, %v; want %d, wantErr %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		vs   []float64
		want Summary
	}{
		{name: "none", vs: nil, want: Summary{}},
		{name: "one", vs: []float64{5}, want: Summary{Median: 5, Min: 5, Max: 5, N: 1}},
		{name: "odd, unsorted", vs: []float64{93, 80, 101}, want: Summary{Median: 93, Min: 80, Max: 101, N: 3}},
		{name: "even takes the mean of the middle two", vs: []float64{4, 1, 3, 2}, want: Summary{Median: 2.5, Min: 1, Max: 4, N: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.vs); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCPUPer100k(t *testing.T) {
	if got := (Run{Requests: 200000, CPUSeconds: 2}).CPUPer100k(); got != 1 {
		t.Fatalf("got %v, want 1", got)
	}
	if got := (Run{}).CPUPer100k(); got != 0 {
		t.Fatalf("no requests: got %v, want 0", got)
	}
}

func TestConfigs(t *testing.T) {
	topo := Topology{HTTPPort: 10001, H2Port: 10002, TCPPort: 10003, HTTPBackends: [2]int{20001, 20002}, TCPBackends: [2]int{30001, 30002}, Dir: "/tmp/x"}
	tests := []struct {
		name string
		cfg  string
		want []string
		not  []string
	}{
		{
			name: "herald",
			cfg:  HeraldConfig(topo),
			want: []string{"port_value: 10001", "port_value: 10002", "port_value: 10003", "codec_type: AUTO",
				"lb_policy: ROUND_ROBIN", "port_value: 20001", "port_value: 20002", "port_value: 30001", "port_value: 30002",
				"envoy.filters.network.tcp_proxy", "cluster: tcp_backends"},
			not: []string{"access_log", "admin"},
		},
		{
			name: "nginx with stream",
			cfg:  NginxConfig(topo, "/usr/lib/nginx/modules/ngx_stream_module.so"),
			want: []string{"load_module /usr/lib/nginx/modules/ngx_stream_module.so;", "worker_processes 1;", "access_log off;",
				"keepalive 128;", "proxy_http_version 1.1;", "proxy_set_header Connection \"\";", "listen 127.0.0.1:10001;",
				"listen 127.0.0.1:10002 http2;", "server 127.0.0.1:20001;", "server 127.0.0.1:20002;",
				"stream {", "listen 127.0.0.1:10003;", "server 127.0.0.1:30001;", "pid /tmp/x/nginx.pid;"},
		},
		{
			name: "nginx without stream",
			cfg:  NginxConfig(topo, ""),
			want: []string{"worker_processes 1;"},
			not:  []string{"load_module", "stream {"},
		},
		{
			name: "haproxy",
			cfg:  HAProxyConfig(topo),
			want: []string{"nbthread 1", "http-reuse always", "balance roundrobin", "bind 127.0.0.1:10001\n",
				"bind 127.0.0.1:10002 proto h2", "server s1 127.0.0.1:20001", "server s2 127.0.0.1:20002",
				"mode tcp", "bind 127.0.0.1:10003", "server t1 127.0.0.1:30001", "server t2 127.0.0.1:30002"},
			not: []string{"log "},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.cfg, w) {
					t.Errorf("missing %q in\n%s", w, tt.cfg)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(tt.cfg, n) {
					t.Errorf("unexpected %q in\n%s", n, tt.cfg)
				}
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	run := func(rps float64) Run {
		return Run{Requests: int64(rps) * 10, RPS: rps, P50: time.Millisecond, P99: 2 * time.Millisecond, P999: 3 * time.Millisecond, CPUSeconds: 1, PeakRSSKiB: 2048}
	}
	rep := Report{
		Machine:   []string{"CPUs (nproc): 2"},
		ChartPath: "bench/results.png",
		Scenarios: []Scenario{{Spec: Spec{Name: "HTTP/1.1 small responses", Unit: "req/s"}, Load: "wrk", Results: []ProxyRuns{
			{Proxy: "direct", Runs: []Run{run(200), run(180), run(220)}},
			{Proxy: "herald", Runs: []Run{run(100)}},
			{Proxy: "nginx", Runs: []Run{run(50)}},
			{Proxy: "haproxy"},
		}}},
	}
	md := rep.Markdown()
	for _, w := range []string{
		"- CPUs (nproc): 2",
		"![median figure per proxy, one panel per scenario](bench/results.png)",
		"| direct | 200 (180–220) | — | 4.00 | 1.000 (1.000–1.000) |",
		"| herald | 100 (100–100) | 0.50 | 2.00 | 1.000 (1.000–1.000) | 2.000 (2.000–2.000) | 3.000 (3.000–3.000) | 100.00 (100.00–100.00) | 2.0 (2.0–2.0) | 0 |",
		"| nginx | 50 (50–50) | 0.25 | — |",
		"| haproxy | not run |",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("missing %q in\n%s", w, md)
		}
	}
}

func TestSpecs(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range Specs {
		if seen[s.ID] {
			t.Errorf("duplicate scenario %q", s.ID)
		}
		seen[s.ID] = true
		if !strings.Contains(","+DefaultScenarios()+",", ","+s.ID+",") {
			t.Errorf("%q missing from the default set %q", s.ID, DefaultScenarios())
		}
	}
	for _, id := range []string{"http1", "http1-500", "http1-64k", "http1-1m", "h2", "tcp", "tcp-bytes", "tcp-connrate", "idle", "routes-1000"} {
		if !seen[id] {
			t.Errorf("scenario %q missing", id)
		}
	}
	tests := []struct {
		name    string
		id      string
		wantErr bool
		conns   int
		path    string
	}{
		{name: "500 connections", id: "http1-500", conns: 500, path: "/"},
		{name: "64 KiB path", id: "http1-64k", conns: 50, path: "/64k"},
		{name: "1 MiB path", id: "http1-1m", conns: 50, path: "/1m"},
		{name: "last route", id: "routes-1000", conns: 50, path: "/r0999/"},
		{name: "h2 is 10 connections (× 10 streams)", id: "h2", conns: 10, path: "/"},
		{name: "unknown", id: "http3", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := SpecByID(tt.id)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && (s.Conns != tt.conns || s.Path != tt.path) {
				t.Fatalf("got %d connections, path %q; want %d, %q", s.Conns, s.Path, tt.conns, tt.path)
			}
		})
	}
}

func TestApplies(t *testing.T) {
	tests := []struct {
		proxy, scenario string
		want            bool
	}{
		{proxy: "caddy", scenario: "http1", want: true},
		{proxy: "caddy", scenario: "h2", want: true},
		{proxy: "caddy", scenario: "idle", want: true},
		{proxy: "caddy", scenario: "routes-1000", want: true},
		{proxy: "caddy", scenario: "tcp", want: false},
		{proxy: "caddy", scenario: "tcp-bytes", want: false},
		{proxy: "caddy", scenario: "tcp-connrate", want: false},
		{proxy: "direct", scenario: "idle", want: false},
		{proxy: "direct", scenario: "tcp-bytes", want: true},
		{proxy: "herald", scenario: "tcp-connrate", want: true},
		{proxy: "haproxy", scenario: "idle", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.proxy+"/"+tt.scenario, func(t *testing.T) {
			s, err := SpecByID(tt.scenario)
			if err != nil {
				t.Fatal(err)
			}
			if got := Applies(tt.proxy, s); got != tt.want {
				t.Fatalf("Applies = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRouteConfigs(t *testing.T) {
	topo := Topology{HTTPPort: 10001, H2Port: 10002, TCPPort: 10003, HTTPBackends: [2]int{20001, 20002}, TCPBackends: [2]int{30001, 30002},
		Dir: "/tmp/x", Routes: RouteCount, MaxConns: 11000, FDLimit: 20000}
	tests := []struct {
		name  string
		cfg   string
		count string // occurs once per route
		want  []string
		not   []string
	}{
		{name: "herald", cfg: HeraldConfig(topo), count: "route: { cluster: http_backends }",
			want: []string{`prefix: "/r0000/"`, `prefix: "/r0999/"`}, not: []string{`prefix: "/"`, `"/r1000/"`}},
		{name: "nginx", cfg: NginxConfig(topo, ""), count: "{ proxy_pass http://backends; }",
			want: []string{"location /r0000/ {", "location /r0999/ {", "worker_rlimit_nofile 20000;", "worker_connections 12024;", "proxy_max_temp_file_size 0;"},
			not:  []string{"location / {"}},
		{name: "haproxy", cfg: HAProxyConfig(topo), count: "use_backend be_http if",
			want: []string{"if { path_beg /r0000/ }", "if { path_beg /r0999/ }\n    default_backend be_http", "    maxconn 11000\n", "no strict-limits"}},
		{name: "caddy", cfg: CaddyConfig(topo), count: `"handler": "reverse_proxy"`,
			want: []string{`"/r0000/*"`, `"/r0999/*"`, `"terminal": true`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each of the 1,000 routes has the line once; herald has two
			// listeners with the same route table.
			n := strings.Count(tt.cfg, tt.count)
			if n != RouteCount && n != 2*RouteCount {
				t.Errorf("%q occurs %d times, want %d (per listener)", tt.count, n, RouteCount)
			}
			for _, w := range tt.want {
				if !strings.Contains(tt.cfg, w) {
					t.Errorf("missing %q", w)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(tt.cfg, w) {
					t.Errorf("unexpected %q", w)
				}
			}
		})
	}
}

func TestCaddyConfig(t *testing.T) {
	topo := Topology{HTTPPort: 10001, H2Port: 10002, TCPPort: 10003, HTTPBackends: [2]int{20001, 20002}}
	var cfg struct {
		Admin struct {
			Disabled bool `json:"disabled"`
		} `json:"admin"`
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen    []string `json:"listen"`
					Protocols []string `json:"protocols"`
					Routes    []struct {
						Match  []map[string][]string `json:"match"`
						Handle []struct {
							Handler   string              `json:"handler"`
							Upstreams []map[string]string `json:"upstreams"`
							LB        struct {
								Selection map[string]string `json:"selection_policy"`
							} `json:"load_balancing"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(CaddyConfig(topo)), &cfg); err != nil {
		t.Fatal(err)
	}
	srv, ok := cfg.Apps.HTTP.Servers["bench"]
	switch {
	case !cfg.Admin.Disabled:
		t.Error("admin endpoint not disabled")
	case !ok:
		t.Fatalf("no server %q", "bench")
	case !slices.Equal(srv.Listen, []string{"127.0.0.1:10001", "127.0.0.1:10002"}):
		t.Errorf("listen = %v", srv.Listen)
	case !slices.Equal(srv.Protocols, []string{"h1", "h2c"}):
		t.Errorf("protocols = %v", srv.Protocols)
	case len(srv.Routes) != 1 || len(srv.Routes[0].Match) != 0 || len(srv.Routes[0].Handle) != 1:
		t.Errorf("routes = %+v, want one catch-all", srv.Routes)
	default:
		h := srv.Routes[0].Handle[0]
		if h.Handler != "reverse_proxy" || h.LB.Selection["policy"] != "round_robin" ||
			len(h.Upstreams) != 2 || h.Upstreams[0]["dial"] != "127.0.0.1:20001" || h.Upstreams[1]["dial"] != "127.0.0.1:20002" {
			t.Errorf("handler = %+v", h)
		}
	}
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\tnginx\nVmHWM:\t   15272 kB\nVmRSS:\t   15000 kB\n"
	tests := []struct {
		name    string
		field   string
		want    int64
		wantErr bool
	}{
		{name: "VmRSS", field: "VmRSS", want: 15000},
		{name: "VmHWM", field: "VmHWM", want: 15272},
		{name: "absent", field: "VmSwap", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatusKiB(status, tt.field)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("got %d, %v; want %d, wantErr %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestRunFigures(t *testing.T) {
	tests := []struct {
		name                 string
		run                  Run
		mibps, perGiB, perKB float64
	}{
		{name: "zero", run: Run{}},
		{name: "throughput", run: Run{Bytes: 4 << 30, Duration: 2 * time.Second, CPUSeconds: 2}, mibps: 2048, perGiB: 0.5},
		{name: "idle", run: Run{IdleConns: 1000, RSSBeforeKiB: 10000, RSSAfterKiB: 15000}, perKB: 5},
		{name: "idle, memory returned", run: Run{IdleConns: 100, RSSBeforeKiB: 10000, RSSAfterKiB: 9900}, perKB: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.run.MiBPerSec(); got != tt.mibps {
				t.Errorf("MiBPerSec = %v, want %v", got, tt.mibps)
			}
			if got := tt.run.CPUPerGiB(); got != tt.perGiB {
				t.Errorf("CPUPerGiB = %v, want %v", got, tt.perGiB)
			}
			if got := tt.run.KiBPerConn(); got != tt.perKB {
				t.Errorf("KiBPerConn = %v, want %v", got, tt.perKB)
			}
		})
	}
}

// testReport has one scenario of each kind; herald meets some targets and
// misses others.
func testReport() Report {
	spec := func(id string) Spec {
		s, err := SpecByID(id)
		if err != nil {
			panic(err)
		}
		return s
	}
	rate := func(rps float64, p99ms int) Run {
		return Run{Requests: int64(rps) * 10, RPS: rps, Bytes: int64(rps) * 10 << 16, Duration: 10 * time.Second,
			P50: time.Millisecond, P99: time.Duration(p99ms) * time.Millisecond, P999: 9 * time.Millisecond, CPUSeconds: 1, PeakRSSKiB: 4096}
	}
	stream := func(mibps float64) Run {
		return Run{Bytes: int64(mibps * 10 * (1 << 20)), Duration: 10 * time.Second, CPUSeconds: 5, PeakRSSKiB: 2048}
	}
	idle := func(kib int64) Run {
		return Run{IdleConns: 1000, RSSBeforeKiB: 10240, RSSAfterKiB: 10240 + kib*1000}
	}
	return Report{Scenarios: []Scenario{
		{Spec: spec("http1-64k"), Load: "wrk", Results: []ProxyRuns{
			{Proxy: "direct", Runs: []Run{rate(400, 1)}},
			{Proxy: "herald", Runs: []Run{rate(300, 2)}},
			{Proxy: "nginx", Runs: []Run{rate(200, 3)}},
			{Proxy: "caddy", Runs: []Run{rate(275, 1)}},
		}},
		{Spec: spec("h2"), Load: "h2load", Results: []ProxyRuns{
			{Proxy: "herald", Runs: []Run{rate(90, 2)}},
			{Proxy: "nginx", Runs: []Run{rate(100, 2)}},
		}},
		{Spec: spec("tcp-bytes"), Load: "Go", Results: []ProxyRuns{
			{Proxy: "direct", Runs: []Run{stream(4000)}},
			{Proxy: "herald", Runs: []Run{stream(1000), stream(950), stream(1100)}},
			{Proxy: "haproxy", Runs: []Run{stream(1000)}},
			{Proxy: "caddy", Skip: true},
		}},
		{Spec: spec("idle"), Load: "Go", Note: "This run held 1000 connections.", Results: []ProxyRuns{
			{Proxy: "direct", Skip: true},
			{Proxy: "herald", Runs: []Run{idle(8)}},
			{Proxy: "nginx", Runs: []Run{idle(2)}},
			{Proxy: "haproxy"},
		}},
	}}
}

func TestTargets(t *testing.T) {
	want := []TargetResult{
		{Scenario: "HTTP/1.1 64 KiB responses", Target: "req/s ≥ 1.0× nginx", Herald: "1.50× (300 vs 200 req/s)", Status: "met"},
		{Scenario: "HTTP/1.1 64 KiB responses", Target: "p99 ≤ nginx's", Herald: "2.000 vs 3.000 ms", Status: "met"},
		{Scenario: "HTTP/1.1 64 KiB responses", Target: "req/s ≥ 1.2× caddy", Herald: "1.09× (300 vs 275 req/s)", Status: "not met"},
		{Scenario: "HTTP/2 downstream (h2c), 100 streams", Target: "req/s ≥ 1.0× nginx", Herald: "0.90× (90 vs 100 req/s)", Status: "not met"},
		{Scenario: "TCP proxy throughput", Target: "MiB/s ≥ 0.9× haproxy", Herald: "1.00× (1000 vs 1000 MiB/s)", Status: "met"},
		{Scenario: "Idle HTTP/1.1 keep-alive connections", Target: "≤ 10 KiB per connection", Herald: "8.0 KiB", Status: "met"},
	}
	got := testReport().Targets()
	if len(got) != len(want) {
		t.Fatalf("got %d targets, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		t.Run(want[i].Scenario+"/"+want[i].Target, func(t *testing.T) {
			if got[i] != want[i] {
				t.Fatalf("got  %+v\nwant %+v", got[i], want[i])
			}
		})
	}
	t.Run("p99 not measured when nginx completed nothing", func(t *testing.T) {
		rep := testReport()
		rep.Scenarios = rep.Scenarios[:1]
		rep.Scenarios[0].Results[2].Runs = []Run{{}}
		got := rep.Targets()
		if len(got) != 3 || got[0].Status != "not measured" || got[1].Status != "not measured" {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("not measured without the base proxy", func(t *testing.T) {
		rep := testReport()
		rep.Scenarios = rep.Scenarios[1:2]
		rep.Scenarios[0].Results = rep.Scenarios[0].Results[:1] // herald only
		got := rep.Targets()
		if len(got) != 1 || got[0].Status != "not measured" || got[0].Herald != "" {
			t.Fatalf("got %+v", got)
		}
	})
}

func TestMarkdownKinds(t *testing.T) {
	md := testReport().Markdown()
	for _, w := range []string{
		"## Targets (issue #3)",
		"| HTTP/1.1 64 KiB responses | req/s ≥ 1.2× caddy | 1.09× (300 vs 275 req/s) | not met |",
		"| proxy | req/s | MiB/s | × direct | × nginx | p50 ms | p99 ms | p99.9 ms | CPU s / 100k | peak RSS MiB | errors |",
		"| herald | 300 (300–300) | 18.8 (18.8–18.8) | 0.75 | 1.50 | 1.000 (1.000–1.000) | 2.000 (2.000–2.000) |",
		"herald × caddy: 1.09 (req/s).",
		"| proxy | MiB/s | × direct | × nginx | × haproxy | CPU s / GiB | peak RSS MiB | errors |",
		"| herald | 1000.0 (950.0–1100.0) | 0.25 | — | 1.00 | 0.51 (0.47–0.54) | 2.0 (2.0–2.0) | 0 |",
		"| caddy | — | — | — | — | — | — | — |",
		"This run held 1000 connections.",
		"| proxy | connections | RSS before MiB | RSS after MiB | KiB / connection | × nginx | errors |",
		"| direct | — | — | — | — | — | — |",
		"| herald | 1000 (1000–1000) | 10.0 (10.0–10.0) | 17.8 (17.8–17.8) | 8.00 (8.00–8.00) | 4.00 | 0 |",
		"| haproxy | not run |",
	} {
		if !strings.Contains(md, w) {
			t.Errorf("missing %q in\n%s", w, md)
		}
	}
	if strings.Contains(md, "herald × caddy: —") {
		t.Error("a × caddy line for a scenario without caddy")
	}
}

func TestChart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.png")
	if err := testReport().Chart(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("not a PNG: % x", b[:min(8, len(b))])
	}
	if err := (Report{}).Chart(path); err == nil {
		t.Fatal("no scenarios: want an error")
	}
}

func TestCompact(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{
		{v: 48171, want: "48.2k"},
		{v: 912.3, want: "912"},
		{v: 31.72, want: "31.7"},
		{v: 7.254, want: "7.25"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := compact(tt.v); got != tt.want {
				t.Fatalf("compact(%v) = %q, want %q", tt.v, got, tt.want)
			}
		})
	}
}

func TestPlainTicks(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi float64
		want   string // one of the labels
	}{
		{name: "large", lo: 0, hi: 60000, want: "30000"},
		{name: "fractional", lo: 0, hi: 0.9, want: "0.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var labels []string
			for _, tk := range (plainTicks{}).Ticks(tt.lo, tt.hi) {
				if tk.Label != "" {
					labels = append(labels, tk.Label)
				}
			}
			if !slices.Contains(labels, tt.want) {
				t.Fatalf("labels %q, want one %q", labels, tt.want)
			}
			for _, l := range labels {
				if strings.HasSuffix(l, ".00") {
					t.Fatalf("padded label %q in %q", l, labels)
				}
			}
		})
	}
}
