package upstream

import (
	"testing"
	"time"
)

func TestTLSOptionsFor(t *testing.T) {
	tests := []struct {
		name      string
		autoSNI   bool
		autoSAN   bool
		authority string
		override  string
		want      TLSOptions
	}{
		{name: "host without port", autoSNI: true, authority: "a.example.com", want: TLSOptions{ServerName: "a.example.com"}},
		{name: "port is dropped", autoSNI: true, authority: "a.example.com:8443", want: TLSOptions{ServerName: "a.example.com"}},
		{name: "invalid port kept as host", autoSNI: true, authority: "a.example.com:99999", want: TLSOptions{ServerName: "a.example.com:99999"}},
		{name: "IPv4 is not sent as SNI", autoSNI: true, authority: "127.0.0.1:80", want: TLSOptions{}},
		{name: "IPv6 literal with port", autoSNI: true, autoSAN: true, authority: "[::1]:443", want: TLSOptions{VerifyName: "::1"}},
		{name: "IPv6 literal without port", autoSNI: true, autoSAN: true, authority: "[2001:db8::1]", want: TLSOptions{VerifyName: "2001:db8::1"}},
		{name: "auto_san_validation alone", autoSAN: true, authority: "b.example.com:80", want: TLSOptions{VerifyName: "b.example.com"}},
		{name: "both", autoSNI: true, autoSAN: true, authority: "b.example.com", want: TLSOptions{ServerName: "b.example.com", VerifyName: "b.example.com"}},
		{name: "override header wins", autoSNI: true, authority: "a.example.com", override: "c.example.com:443", want: TLSOptions{ServerName: "c.example.com"}},
		{name: "empty authority", autoSNI: true, authority: "", want: TLSOptions{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{http: httpOptions{autoSNI: tc.autoSNI, autoSAN: tc.autoSAN}}
			if got := c.TLSOptionsFor(tc.authority, tc.override); got != tc.want {
				t.Errorf("TLSOptionsFor(%q, %q) = %+v, want %+v", tc.authority, tc.override, got, tc.want)
			}
		})
	}
}

func TestTLSOptionsPoolKey(t *testing.T) {
	keys := map[string]TLSOptions{}
	for _, o := range []TLSOptions{
		{ServerName: "a.example.com"}, {ServerName: "b.example.com"},
		{VerifyName: "a.example.com"}, {ServerName: "a.example.com", VerifyName: "a.example.com"},
	} {
		k := o.PoolKey()
		if k == "" {
			t.Errorf("PoolKey(%+v) is empty", o)
		}
		if prev, ok := keys[k]; ok {
			t.Errorf("PoolKey(%+v) = PoolKey(%+v) = %q", o, prev, k)
		}
		keys[k] = o
	}
	if k := (TLSOptions{}).PoolKey(); k != "" {
		t.Errorf("zero PoolKey = %q, want empty", k)
	}
}

func TestParseAutoSNIOptions(t *testing.T) {
	cs := parseClusters(t, `
- name: c
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
      upstream_http_protocol_options: { auto_sni: true, auto_san_validation: true, override_auto_sni_header: X-SNI }
      explicit_http_config: { http_protocol_options: {} }
`)
	o, errs := parseHTTPOptions(cs[0], "c")
	if err := errs.Err(); err != nil {
		t.Fatal(err)
	}
	if !o.autoSNI || !o.autoSAN || o.sniHeader != "x-sni" {
		t.Errorf("got autoSNI=%v autoSAN=%v header=%q, want true true \"x-sni\"", o.autoSNI, o.autoSAN, o.sniHeader)
	}
	// Without a TLS transport socket the options change nothing.
	if (&Cluster{http: o}).AutoSNI() {
		t.Error("AutoSNI() on a plaintext cluster = true, want false")
	}
}

func TestIdlePoolSub(t *testing.T) {
	clk := newClock()
	var p IdlePool
	p.init(time.Minute, 10, clk.now)
	if p.Sub("") != &p {
		t.Fatal(`Sub("") is not the pool itself`)
	}
	a, b := p.Sub("a.example.com|"), p.Sub("b.example.com|")
	if a == b || a == &p || p.Sub("a.example.com|") != a {
		t.Fatal("sub-pools are not one per key")
	}
	ca, cb := &fakeConn{id: 1}, &fakeConn{id: 2}
	if !a.Put(ca) || !b.Put(cb) {
		t.Fatal("Put refused")
	}
	if got := p.Get(); got != nil {
		t.Errorf("default pool Get = conn %d, want nil (SNI connections never reused without SNI)", idOf(got))
	}
	if got := b.Get(); got == nil || idOf(got) != 2 {
		t.Errorf("b Get = %v, want conn 2", got)
	}
	if got := b.Get(); got != nil {
		t.Errorf("b Get = conn %d, want nil (a's connection must not serve b)", idOf(got))
	}
	clk.advance(2 * time.Minute)
	p.Prune()
	if !ca.closed.Load() || a.Len() != 0 {
		t.Error("Prune did not reach the sub-pool")
	}
	cc := &fakeConn{id: 3}
	a.Put(cc)
	p.CloseAll()
	if !cc.closed.Load() {
		t.Error("CloseAll did not close the sub-pool's connection")
	}
	if p.Sub("c|").Put(&fakeConn{id: 4}) {
		t.Error("a sub-pool created after CloseAll accepted a connection")
	}
}
