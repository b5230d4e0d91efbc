package lbpolicy

import "testing"

type addrHost struct{ addr, name string }

func (addrHost) Weight() uint32        { return 1 }
func (addrHost) ActiveRequests() int64 { return 0 }
func (h addrHost) Address() string     { return h.addr }
func (h addrHost) Hostname() string    { return h.name }

// keyedHost carries an endpoint metadata envoy.lb hash_key.
type keyedHost struct {
	addrHost
	key string
}

func (h keyedHost) LBHashKey() string { return h.key }

type bareHost struct{}

func (bareHost) Weight() uint32        { return 1 }
func (bareHost) ActiveRequests() int64 { return 0 }

func TestHashKey(t *testing.T) {
	tests := []struct {
		name        string
		host        Host
		useHostname bool
		want        string
	}{
		{name: "address", host: addrHost{addr: "[::1]:80", name: "a.example"}, want: "[::1]:80"},
		{name: "hostname", host: addrHost{addr: "[::1]:80", name: "a.example"}, useHostname: true, want: "a.example"},
		{name: "no address", host: bareHost{}, want: ""},
		// Envoy: the envoy.lb hash_key metadata wins over address and hostname;
		// an empty one falls back to them.
		{name: "metadata hash_key", host: keyedHost{addrHost{addr: "[::1]:80", name: "a.example"}, "shard-7"}, useHostname: true, want: "shard-7"},
		{name: "empty metadata hash_key", host: keyedHost{addrHost{addr: "[::1]:80"}, ""}, want: "[::1]:80"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := HashKey(tc.host, tc.useHostname); got != tc.want {
				t.Errorf("HashKey = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRand(t *testing.T) {
	// SplitMix64 reference: seed 0 gives 0xe220a8397b1dcdaf first.
	if got := NewRand(0).Uint64(); got != 0xe220a8397b1dcdaf {
		t.Errorf("first value of seed 0 = %#x, want 0xe220a8397b1dcdaf", got)
	}
	a, b := NewRand(42), NewRand(42)
	for i := range 100 {
		if x, y := a.Uint64(), b.Uint64(); x != y {
			t.Fatalf("value %d differs for the same seed: %#x %#x", i, x, y)
		}
	}
	r := NewRand(1)
	if n := testing.AllocsPerRun(100, func() { r.Uint64() }); n != 0 {
		t.Errorf("Uint64 allocates %v times", n)
	}
}
