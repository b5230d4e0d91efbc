package router

import (
	"testing"

	"github.com/herald-proxy/herald/internal/upstream"
)

func TestALPNCache(t *testing.T) {
	a, b := &upstream.Host{}, &upstream.Host{}
	type op struct {
		host *upstream.Host
		pool string
		// set is recorded first when doSet (HTTP1 is the zero value).
		set   upstream.HTTPProtocol
		doSet bool
		want  upstream.HTTPProtocol
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{name: "unknown host", ops: []op{{host: a, want: upstream.Auto}}},
		{name: "remembered per host", ops: []op{
			{host: a, set: upstream.HTTP2, doSet: true, want: upstream.HTTP2},
			{host: b, want: upstream.Auto},
		}},
		// auto_sni pools of one host negotiate on their own.
		{name: "remembered per pool", ops: []op{
			{host: a, pool: "x.example|", set: upstream.HTTP1, doSet: true, want: upstream.HTTP1},
			{host: a, want: upstream.Auto},
			{host: a, pool: "y.example|", want: upstream.Auto},
		}},
		// A host that stops offering h2 is remembered as HTTP/1.1.
		{name: "changes", ops: []op{
			{host: a, set: upstream.HTTP2, doSet: true, want: upstream.HTTP2},
			{host: a, set: upstream.HTTP1, doSet: true, want: upstream.HTTP1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c alpnCache
			for i, o := range tc.ops {
				if o.doSet {
					c.set(o.host, o.pool, o.set)
				}
				if got := c.get(o.host, o.pool); got != o.want {
					t.Errorf("op %d: get = %v, want %v", i, got, o.want)
				}
			}
		})
	}
}

// TestALPNCacheGetAllocs: the lookup on every request to an auto_config
// cluster does not allocate.
func TestALPNCacheGetAllocs(t *testing.T) {
	var c alpnCache
	h := &upstream.Host{}
	c.set(h, "", upstream.HTTP2)
	if n := testing.AllocsPerRun(100, func() { c.get(h, "") }); n != 0 {
		t.Errorf("get allocates %v times, want 0", n)
	}
}
