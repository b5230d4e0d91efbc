package upstream

import "testing"

func TestNegotiatedHTTP(t *testing.T) {
	a, b := &Host{}, &Host{}
	type op struct {
		host *Host
		pool string
		// set is recorded first when doSet (HTTP1 is the zero value).
		set   HTTPProtocol
		doSet bool
		want  HTTPProtocol
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{name: "unknown host", ops: []op{{host: a, want: Auto}}},
		{name: "remembered per host", ops: []op{
			{host: a, set: HTTP2, doSet: true, want: HTTP2},
			{host: b, want: Auto},
		}},
		// auto_sni pools of one host negotiate on their own.
		{name: "remembered per pool", ops: []op{
			{host: a, pool: "x.example|", set: HTTP1, doSet: true, want: HTTP1},
			{host: a, want: Auto},
			{host: a, pool: "y.example|", want: Auto},
			{host: a, pool: "y.example|", set: HTTP2, doSet: true, want: HTTP2},
			{host: a, pool: "x.example|", want: HTTP1},
		}},
		// A host that stops offering h2 is remembered as HTTP/1.1, and
		// the other way round.
		{name: "changes", ops: []op{
			{host: a, set: HTTP2, doSet: true, want: HTTP2},
			{host: a, set: HTTP1, doSet: true, want: HTTP1},
			{host: a, pool: "x.example|", set: HTTP2, doSet: true, want: HTTP2},
			{host: a, pool: "x.example|", set: HTTP1, doSet: true, want: HTTP1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.pools.alpn, b.pools.alpn = alpnOutcomes{}, alpnOutcomes{}
			for i, o := range tc.ops {
				if o.doSet {
					o.host.SetNegotiatedHTTP(o.pool, o.set)
				}
				if got := o.host.NegotiatedHTTP(o.pool); got != o.want {
					t.Errorf("op %d: NegotiatedHTTP(%q) = %v, want %v", i, o.pool, got, o.want)
				}
			}
		})
	}
}

// TestNegotiatedHTTPAllocs: the lookup on every request to an auto_config
// cluster does not allocate, for the default pool or an auto_sni one.
func TestNegotiatedHTTPAllocs(t *testing.T) {
	h := &Host{}
	h.SetNegotiatedHTTP("", HTTP2)
	h.SetNegotiatedHTTP("x.example|", HTTP2)
	for _, pool := range []string{"", "x.example|", "unknown|"} {
		if n := testing.AllocsPerRun(100, func() { h.NegotiatedHTTP(pool) }); n != 0 {
			t.Errorf("NegotiatedHTTP(%q) allocates %v times, want 0", pool, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { h.SetNegotiatedHTTP("x.example|", HTTP2) }); n != 0 {
		t.Errorf("SetNegotiatedHTTP of the known outcome allocates %v times, want 0", n)
	}
}

// TestNegotiatedHTTPKeptByHost: the outcome lives on the host, so an
// unrelated config change keeps it, and a changed cluster (new hosts)
// starts over.
func TestNegotiatedHTTPKeptByHost(t *testing.T) {
	m, _ := newTestManager(t)
	apply(t, m, staticCluster("a", "10.0.0.1")+staticCluster("b", "10.0.0.2"))
	m.Cluster("a").Pick(nil).SetNegotiatedHTTP("", HTTP2)

	apply(t, m, staticCluster("a", "10.0.0.1")+staticCluster("b", "10.0.0.3"))
	if got := m.Cluster("a").Pick(nil).NegotiatedHTTP(""); got != HTTP2 {
		t.Errorf("after another cluster changed: NegotiatedHTTP = %v, want %v", got, HTTP2)
	}
	apply(t, m, "")
	apply(t, m, staticCluster("a", "10.0.0.1"))
	if got := m.Cluster("a").Pick(nil).NegotiatedHTTP(""); got != Auto {
		t.Errorf("after the cluster was removed and added: NegotiatedHTTP = %v, want %v", got, Auto)
	}
}

// BenchmarkNegotiatedHTTP is the auto_config request path's lookup.
func BenchmarkNegotiatedHTTP(b *testing.B) {
	h := &Host{}
	h.SetNegotiatedHTTP("", HTTP2)
	h.SetNegotiatedHTTP("x.example|", HTTP2)
	b.ReportAllocs()
	for b.Loop() {
		if h.NegotiatedHTTP("") != HTTP2 || h.NegotiatedHTTP("x.example|") != HTTP2 {
			b.Fatal("outcome lost")
		}
	}
}
