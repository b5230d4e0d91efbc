// Command loadbench is herald's side-by-side load harness (issue #3): it
// installs wrk, h2load, nginx and HAProxy from Debian's packages when they are
// missing, builds herald, starts Go backends on loopback, and measures herald,
// nginx, HAProxy and a direct connection in turn, pinned with taskset (proxy on
// CPU 1; load generator and backends on CPU 0). It writes BENCHMARKS.md and
// bench/results.png. See bench/README.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herald-proxy/herald/bench"
)

type options struct {
	duration, warmup time.Duration
	rounds           int
	quick            bool
	noInstall        bool
	proxies          []string
	scenarios        []string
	idleConns        int
	heraldBin        string
	out, chart       string
}

// caddyVersion is the Caddy release the harness builds from the Go module
// proxy (go install …/cmd/caddy@caddyVersion) and caches.
const caddyVersion = "v2.11.9"

// wantFDs is the open-file limit the harness asks for (and its children
// inherit): 10,000 idle connections plus the proxies' upstream sockets.
const wantFDs = 65536

const (
	pinnedEnv = "LOADBENCH_PINNED" // set once the harness runs under taskset -c 0: the scratch directory
	ncpuEnv   = "LOADBENCH_NCPU"   // the machine's CPU count, seen before pinning
)

func main() {
	var o options
	var proxies, scenarios string
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration of each run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up before each measured run")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; the proxies run in turn, alternating, once per round")
	flag.BoolVar(&o.quick, "quick", false, "smoke test: 2 s runs, 1 s warm-up, 1 round, 1,000 idle connections")
	flag.BoolVar(&o.noInstall, "no-install", false, "do not apt-get install missing tools")
	flag.StringVar(&o.heraldBin, "herald-bin", "", "use this herald binary instead of building ./cmd/herald")
	flag.IntVar(&o.idleConns, "idle-conns", 10000, "connections of the idle scenario")
	flag.StringVar(&proxies, "proxies", strings.Join(bench.Proxies, ","), "proxies to measure (comma-separated)")
	flag.StringVar(&scenarios, "scenarios", bench.DefaultScenarios(), "scenarios to run (comma-separated)")
	flag.StringVar(&o.out, "out", "BENCHMARKS.md", "report path (relative paths: to the repo root)")
	flag.StringVar(&o.chart, "chart", "bench/results.png", "chart path (relative paths: to the repo root)")
	flag.Parse()
	if o.quick {
		o.duration, o.warmup, o.rounds, o.idleConns = 2*time.Second, time.Second, 1, min(o.idleConns, 1000)
	}
	o.proxies = strings.Split(proxies, ",")
	o.scenarios = strings.Split(scenarios, ",")
	for _, p := range o.proxies {
		if !slices.Contains(bench.Proxies, p) {
			fmt.Fprintf(os.Stderr, "loadbench: unknown proxy %q (one of %s)\n", p, strings.Join(bench.Proxies, ", "))
			os.Exit(2)
		}
	}
	for _, s := range o.scenarios {
		if _, err := bench.SpecByID(s); err != nil {
			fmt.Fprintln(os.Stderr, "loadbench:", err)
			os.Exit(2)
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		stopAll()
		os.Exit(1)
	}
}

func run(o options) error {
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if os.Getenv(pinnedEnv) == "" {
		// Stage 1: tools, herald binary, then re-exec pinned to CPU 0 so that
		// the backends, the TCP client and every load generator stay there.
		if runtime.NumCPU() < 2 {
			return fmt.Errorf("need at least 2 CPUs (proxy on CPU 1, load on CPU 0); have %d", runtime.NumCPU())
		}
		raiseFDLimit()
		if err := ensureTools(o.noInstall); err != nil {
			return err
		}
		if slices.Contains(o.proxies, "caddy") {
			if err := ensureCaddy(); err != nil {
				return err
			}
		}
		dir, err := os.MkdirTemp("", "loadbench-")
		if err != nil {
			return err
		}
		if o.heraldBin != "" {
			b, err := os.ReadFile(o.heraldBin)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, "herald"), b, 0o755)
			}
			if err != nil {
				os.RemoveAll(dir)
				return fmt.Errorf("-herald-bin: %w", err)
			}
		} else {
			fmt.Println("building herald (go build ./cmd/herald)")
			build := exec.Command("go", "build", "-o", filepath.Join(dir, "herald"), "./cmd/herald")
			build.Dir, build.Stdout, build.Stderr = root, os.Stdout, os.Stderr
			if err := build.Run(); err != nil {
				os.RemoveAll(dir)
				return fmt.Errorf("go build ./cmd/herald: %w", err)
			}
		}
		taskset, err := exec.LookPath("taskset")
		if err != nil {
			os.RemoveAll(dir)
			return err
		}
		self, err := os.Executable()
		if err != nil {
			os.RemoveAll(dir)
			return err
		}
		env := append(os.Environ(), pinnedEnv+"="+dir, ncpuEnv+"="+strconv.Itoa(runtime.NumCPU()))
		return syscall.Exec(taskset, append([]string{"taskset", "-c", "0", self}, os.Args[1:]...), env)
	}
	dir := os.Getenv(pinnedEnv)
	defer os.RemoveAll(dir)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nloadbench: %v: stopping proxies\n", s)
		stopAll()
		os.RemoveAll(dir)
		os.Exit(130)
	}()
	caddyBin, err := caddyPath()
	if err != nil {
		return err
	}
	h := &harness{o: o, dir: dir, root: root, heraldBin: filepath.Join(dir, "herald"), caddyBin: caddyBin}
	return h.run()
}

func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/herald-proxy/herald\n") {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("run from inside the herald repository")
		}
		d = p
	}
}

// streamModule is where Debian's libnginx-mod-stream puts nginx's stream module.
const streamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// ensureTools installs the Debian packages of missing tools: apt-get update
// once, then apt-get install -y.
func ensureTools(noInstall bool) error {
	need := map[string]string{"wrk": "wrk", "nginx": "nginx", "haproxy": "haproxy", "h2load": "nghttp2-client", "taskset": "util-linux"}
	var pkgs []string
	for bin, pkg := range need {
		if _, err := exec.LookPath(bin); err != nil {
			pkgs = append(pkgs, pkg)
		}
	}
	if _, err := os.Stat(streamModule); err != nil {
		pkgs = append(pkgs, "libnginx-mod-stream")
	}
	if len(pkgs) == 0 {
		return nil
	}
	slices.Sort(pkgs)
	if noInstall {
		return fmt.Errorf("missing Debian packages %v (and -no-install given)", pkgs)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages %v: run as root or `apt-get install -y %s` first", pkgs, strings.Join(pkgs, " "))
	}
	fmt.Println("installing", pkgs)
	for _, args := range [][]string{{"update"}, append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)} {
		c := exec.Command("apt-get", args...)
		c.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		c.Stdout, c.Stderr = os.Stdout, os.Stderr
		if err := c.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w", args[0], err)
		}
	}
	return nil
}

// raiseFDLimit raises RLIMIT_NOFILE to wantFDs, or as far as the hard limit
// allows when the process may not raise that (no CAP_SYS_RESOURCE). Setting
// it explicitly makes children inherit it (Go otherwise restores the original
// soft limit for the processes it starts).
func raiseFDLimit() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	if l.Max < wantFDs && syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: wantFDs, Max: wantFDs}) == nil {
		return
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: min(l.Max, wantFDs), Max: l.Max})
}

// fdLimit is the current soft RLIMIT_NOFILE.
func fdLimit() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 1024
	}
	return int(min(l.Cur, 1<<20))
}

// caddyPath is where the Caddy binary is cached: the user cache directory
// (~/.cache) / herald-loadbench / caddy-<version> / caddy.
func caddyPath() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "herald-loadbench", "caddy-"+caddyVersion, "caddy"), nil
}

// ensureCaddy builds Caddy with go install from the Go module proxy unless
// the cached binary exists.
func ensureCaddy() error {
	bin, err := caddyPath()
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err == nil {
		return nil
	}
	fmt.Printf("building Caddy %s (go install github.com/caddyserver/caddy/v2/cmd/caddy@%[1]s; a few minutes, cached in %s)\n", caddyVersion, filepath.Dir(bin))
	c := exec.Command("go", "install", "github.com/caddyserver/caddy/v2/cmd/caddy@"+caddyVersion)
	c.Dir = os.TempDir() // outside herald's module
	c.Env = append(os.Environ(), "GOBIN="+filepath.Dir(bin))
	c.Stdout, c.Stderr = os.Stdout, os.Stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("go install caddy@%s: %w", caddyVersion, err)
	}
	return nil
}

// Processes started by the harness, stopped by PID on exit, error or signal.
var (
	procsMu sync.Mutex
	procs   = map[int]*proc{}
)

// proc is a started process and a channel closed when it has exited.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProc starts c and registers it for stopAll.
func startProc(c *exec.Cmd) (*proc, error) {
	if err := c.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: c, exited: make(chan struct{})}
	go func() { c.Wait(); close(p.exited) }()
	procsMu.Lock()
	procs[c.Process.Pid] = p
	procsMu.Unlock()
	return p, nil
}

// stop sends SIGTERM to the process (by PID), then SIGKILL after 5 s.
func (p *proc) stop() {
	pid := p.cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(pid, syscall.SIGKILL)
		<-p.exited
	}
	procsMu.Lock()
	delete(procs, pid)
	procsMu.Unlock()
}

func stopAll() {
	procsMu.Lock()
	ps := make([]*proc, 0, len(procs))
	for _, p := range procs {
		ps = append(ps, p)
	}
	procsMu.Unlock()
	for _, p := range ps {
		p.stop()
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening polls until every port accepts a connection or the deadline passes.
func waitListening(ports []int, p *proc) error {
	deadline := time.Now().Add(10 * time.Second)
	for _, port := range ports {
		for {
			conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited before listening on %d", p.cmd.Path, port)
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: port %d not listening after 10s: %v", p.cmd.Path, port, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
