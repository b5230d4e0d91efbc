package upstream

import "sync/atomic"

// alpnOutcomes remember what the connections of an auto_config host
// negotiated last, per auto_sni pool (TLSOptions.PoolKey, "" for the
// default pool). They belong to the host next to its pools, so a listener
// or route reload keeps them, and they go with the host or its cluster.
//
// Envoy: an auto_config cluster's per-host mixed connection pool
// (source/common/http/mixed_conn_pool.cc) learns the protocol from each
// new connection's ALPN and keeps the connections of that protocol; the
// pool is the cluster manager's, so a listener or route update does not
// make it relearn
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/connection_pooling).
type alpnOutcomes struct {
	// def is the default pool's outcome plus one (0: not known yet).
	def atomic.Uint32
	// pools maps an auto_sni pool key to its outcome: copy-on-write under
	// muxPools.mu, read without a lock.
	pools atomic.Pointer[map[string]HTTPProtocol]
}

// NegotiatedHTTP returns what the last new connection of the host's pool
// (TLSOptions.PoolKey; "" for the default pool) of an auto_config cluster
// negotiated by ALPN: HTTP2 or HTTP1, or Auto when no connection has told
// yet. It does not allocate.
func (h *Host) NegotiatedHTTP(pool string) HTTPProtocol {
	a := &h.pools.alpn
	if pool == "" {
		if v := a.def.Load(); v != 0 {
			return HTTPProtocol(v - 1)
		}
		return Auto
	}
	if m := a.pools.Load(); m != nil {
		if p, ok := (*m)[pool]; ok {
			return p
		}
	}
	return Auto
}

// SetNegotiatedHTTP records what a new connection of the host's pool
// negotiated (see NegotiatedHTTP). Recording the known outcome again
// costs a load.
func (h *Host) SetNegotiatedHTTP(pool string, p HTTPProtocol) {
	if h.NegotiatedHTTP(pool) == p {
		return
	}
	a := &h.pools.alpn
	if pool == "" {
		a.def.Store(uint32(p) + 1)
		return
	}
	h.pools.mu.Lock()
	defer h.pools.mu.Unlock()
	old := a.pools.Load()
	m := make(map[string]HTTPProtocol, 1)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[pool] = p
	a.pools.Store(&m)
}
