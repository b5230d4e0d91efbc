package bench

import (
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
HARNESS requests=72596 duration_us=2000123 p50_us=1083 p99_us=2223 p999_us=5104 connect=0 read=0 write=0 status=0 timeout=0
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
			want: Run{Requests: 72596, Duration: 2000123 * time.Microsecond, RPS: 36296.41,
				P50: 1083 * time.Microsecond, P99: 2223 * time.Microsecond, P999: 5104 * time.Microsecond},
		},
		{
			name: "errors and non-2xx are added",
			out: strings.Replace(wrkOutput, "connect=0 read=0 write=0 status=0 timeout=0", "connect=1 read=2 write=3 status=7 timeout=4", 1) +
				"  Non-2xx or 3xx responses: 7\n",
			want: Run{Requests: 72596, Duration: 2000123 * time.Microsecond, RPS: 36296.41,
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
		Scenarios: []Scenario{{Name: "HTTP/1.1 small responses", Load: "wrk", Unit: "req/s", Results: []ProxyRuns{
			{Proxy: "direct", Runs: []Run{run(200), run(180), run(220)}},
			{Proxy: "herald", Runs: []Run{run(100)}},
			{Proxy: "nginx", Runs: []Run{run(50)}},
			{Proxy: "haproxy"},
		}}},
	}
	md := rep.Markdown()
	for _, w := range []string{
		"- CPUs (nproc): 2",
		"![requests per second per proxy and scenario](bench/results.png)",
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
