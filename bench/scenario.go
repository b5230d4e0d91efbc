package bench

import (
	"fmt"
	"strings"
)

// Kind is what a scenario measures, and so which columns its table has.
type Kind int

const (
	// KindRate is requests (round trips, connections) per second with
	// latency percentiles.
	KindRate Kind = iota
	// KindThroughput is bytes per second through the proxy.
	KindThroughput
	// KindIdle is the proxy's resident memory per idle connection.
	KindIdle
)

// Spec describes one scenario: its -scenarios name, its title and unit in the
// report, and what the harness sends.
type Spec struct {
	ID    string // -scenarios name, e.g. "http1-64k"
	Name  string // report title
	Unit  string // rate unit: "req/s", "round trips/s", "connections/s"; "MiB/s" for throughput
	Kind  Kind
	HTTP  bool   // an HTTP scenario: Caddy (no layer 4 in stock Caddy) runs it
	H1    bool   // downstream HTTP/1.1: counts for the HTTP/1.1 targets
	Bytes bool   // large responses: the table also shows MiB/s
	Conns int    // wrk/h2load/TCP client connections (0 where not meaningful)
	Path  string // request path for HTTP scenarios
}

// RouteCount is the number of routes of the routes-1000 scenario's config.
const RouteCount = 1000

// Specs is every scenario in the order they run and are reported.
var Specs = []Spec{
	{ID: "http1", Name: "HTTP/1.1 small responses, 50 connections", Unit: "req/s", Kind: KindRate, HTTP: true, H1: true, Conns: 50, Path: "/"},
	{ID: "http1-500", Name: "HTTP/1.1 small responses, 500 connections", Unit: "req/s", Kind: KindRate, HTTP: true, H1: true, Conns: 500, Path: "/"},
	{ID: "http1-64k", Name: "HTTP/1.1 64 KiB responses", Unit: "req/s", Kind: KindRate, HTTP: true, H1: true, Bytes: true, Conns: 50, Path: "/64k"},
	{ID: "http1-1m", Name: "HTTP/1.1 1 MiB responses", Unit: "req/s", Kind: KindRate, HTTP: true, H1: true, Bytes: true, Conns: 50, Path: "/1m"},
	{ID: "h2", Name: "HTTP/2 downstream (h2c), 100 streams", Unit: "req/s", Kind: KindRate, HTTP: true, Conns: 10, Path: "/"},
	{ID: "routes-1000", Name: "HTTP/1.1 with 1,000 routes (last one matches)", Unit: "req/s", Kind: KindRate, HTTP: true, H1: true, Conns: 50, Path: RoutePrefix(RouteCount - 1)},
	{ID: "tcp", Name: "TCP echo round trips", Unit: "round trips/s", Kind: KindRate, Conns: 50},
	{ID: "tcp-bytes", Name: "TCP proxy throughput", Unit: "MiB/s", Kind: KindThroughput, Conns: 4},
	{ID: "tcp-connrate", Name: "TCP connection rate", Unit: "connections/s", Kind: KindRate, Conns: 50},
	{ID: "idle", Name: "Idle HTTP/1.1 keep-alive connections", Unit: "KiB/connection", Kind: KindIdle, HTTP: true, H1: true, Path: "/"},
}

// DefaultScenarios is the -scenarios default: every scenario.
func DefaultScenarios() string {
	ids := make([]string, len(Specs))
	for i, s := range Specs {
		ids[i] = s.ID
	}
	return strings.Join(ids, ",")
}

// SpecByID returns the scenario named id.
func SpecByID(id string) (Spec, error) {
	for _, s := range Specs {
		if s.ID == id {
			return s, nil
		}
	}
	return Spec{}, fmt.Errorf("unknown scenario %q (one of %s)", id, DefaultScenarios())
}

// Proxies are the -proxies names, in the default order.
var Proxies = []string{"direct", "herald", "nginx", "haproxy", "caddy"}

// Applies reports whether proxy runs in scenario s: Caddy has no layer-4
// proxy in its stock build, so it runs only the HTTP scenarios; "direct" has
// no idle-connection figure (its backends live inside the harness process).
func Applies(proxy string, s Spec) bool {
	switch {
	case proxy == "caddy":
		return s.HTTP
	case proxy == "direct":
		return s.Kind != KindIdle
	}
	return true
}

// RoutePrefix is the path prefix of route i of the routes-1000 config:
// "/r0000/" … "/r0999/".
func RoutePrefix(i int) string { return fmt.Sprintf("/r%04d/", i) }
