package connmgr

import (
	"strings"
	"sync/atomic"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// This file holds the downstream common_http_protocol_options beyond
// idle_timeout and max_headers_count: max_connection_duration,
// max_requests_per_connection and headers_with_underscores_action.
// max_stream_duration shares the route's stream timer (duration.go).
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-httpprotocoloptions

// UnderscoresAction is common_http_protocol_options.headers_with_underscores_action.
type UnderscoresAction int

// Actions on a request header whose name contains an underscore.
const (
	// AllowUnderscores passes such headers on (Envoy's default, ALLOW).
	AllowUnderscores UnderscoresAction = iota
	// RejectUnderscores refuses the request (REJECT_REQUEST): HTTP/1 gets a
	// 400 and the connection closes, HTTP/2 and HTTP/3 streams are reset.
	RejectUnderscores
	// DropUnderscores removes the header before any filter sees it
	// (DROP_HEADER).
	DropUnderscores
)

// Response code details of a request refused for an underscore in a header
// name, per codec (Envoy's Http1ResponseCodeDetails::InvalidUnderscore and
// its HTTP/2 and HTTP/3 counterparts).
const (
	detailsHTTP1Underscore = "http1.unexpected_underscore"
	detailsHTTP2Underscore = "http2.unexpected_underscore"
	detailsHTTP3Underscore = "http3.unexpected_underscore"
)

// underscoreCounters are one codec's headers_with_underscores_action
// counters. Envoy counts them in the codec stats, rooted at http1., http2.
// and http3. on the downstream side, not under http.<stat_prefix>.
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/stats#per-codec-statistics).
type underscoreCounters struct {
	dropped  *stats.Counter // <codec>.dropped_headers_with_underscores
	rejected *stats.Counter // <codec>.requests_rejected_with_underscores_in_headers
}

// Codec indexes of Config.underscores.
const (
	codecHTTP1 = iota
	codecHTTP2
	codecHTTP3
)

// prepareCommonOptions looks up what the options need once per config:
// the codec counters, only when an action other than ALLOW can count
// (without a Store, in a store of their own).
func (cfg *Config) prepareCommonOptions() {
	if cfg.HeadersWithUnderscores == AllowUnderscores {
		return
	}
	store := cfg.Store
	if store == nil {
		store = stats.NewStore()
	}
	for i, codec := range [...]string{"http1.", "http2.", "http3."} {
		sc := store.Scope(codec)
		cfg.underscores[i] = underscoreCounters{
			dropped:  sc.Counter("dropped_headers_with_underscores"),
			rejected: sc.Counter("requests_rejected_with_underscores_in_headers"),
		}
	}
}

// codecIndex is the connection's codec as an index of Config.underscores.
func (c *conn) codecIndex() int {
	switch {
	case c.http3:
		return codecHTTP3
	case c.http2:
		return codecHTTP2
	}
	return codecHTTP1
}

// checkUnderscores applies headers_with_underscores_action (not ALLOW) to
// a new request: DROP_HEADER removes every header whose name has an
// underscore, REJECT_REQUEST refuses the request. It returns false when it
// refused the request, which is then finished.
//
// Envoy does this in each codec (HeaderUtility::checkHeaderNameForUnderscores);
// herald does it here, on the codec-neutral headers, before any filter, with
// the same answer, details and counters: the HTTP/1 codec's protocol error
// (400 "Bad Request", http1.unexpected_underscore, downstream_cx_protocol_error,
// the connection closed), the HTTP/2 and HTTP/3 codecs' stream reset
// (http2.unexpected_underscore).
func (c *conn) checkUnderscores(s hhttp.ServerStream) bool {
	h := s.RequestHeaders()
	ctr := &c.cfg.underscores[c.codecIndex()]
	if c.cfg.HeadersWithUnderscores == DropUnderscores {
		j := 0
		for _, f := range h.Fields {
			if isUnderscoreName(f.Name) {
				ctr.dropped.Inc()
				continue
			}
			h.Fields[j] = f
			j++
		}
		clear(h.Fields[j:])
		h.Fields = h.Fields[:j]
		return true
	}
	found := false
	for _, f := range h.Fields {
		if isUnderscoreName(f.Name) {
			found = true
			break
		}
	}
	if !found {
		return true
	}
	ctr.rejected.Inc()
	if !c.http2 {
		c.ServeCodecError(s, &hhttp.CodecError{Status: 400, Details: detailsHTTP1Underscore})
		return false
	}
	// HTTP/2 and HTTP/3: the stream is reset (returning without a response
	// makes the codec send RST_STREAM / RESET_STREAM). Envoy's codec
	// records its details on the stream and the connection manager's
	// onResetStream counts downstream_rq_rx_reset and sets
	// DownstreamProtocolError for a local reset with codec details.
	as := streamPool.Get().(*stream)
	as.begin(c, s)
	as.info.ResponseCodeDetails = detailsHTTP2Underscore
	if c.http3 {
		as.info.ResponseCodeDetails = detailsHTTP3Underscore
	}
	as.info.SetFlag(streaminfo.DownstreamProtocolError)
	c.cfg.Stats.DownstreamRqRxReset.Inc()
	as.end()
	as.reset()
	streamPool.Put(as)
	return false
}

// isUnderscoreName reports whether a regular header name contains an
// underscore (pseudo-headers are the codec's business).
func isUnderscoreName(name string) bool {
	return len(name) > 0 && name[0] != ':' && strings.IndexByte(name, '_') >= 0
}

// countRequest applies max_requests_per_connection to a new stream: the
// stream that reaches the limit drains the connection — on HTTP/1.1 its
// response carries connection: close and the connection closes after it,
// on HTTP/2 and HTTP/3 a GOAWAY goes out — and counts
// downstream_cx_max_requests_reached, as Envoy's ConnectionManagerImpl::newStream
// ("Setting this parameter to 1 will effectively disable keep alive. For
// HTTP/2 and HTTP/3, due to concurrent stream processing, the limit is
// approximate").
func (as *stream) countRequest() {
	c := as.c
	if c.requests.Add(1) < as.cfg.MaxRequestsPerConnection {
		return
	}
	as.cfg.Stats.DownstreamCxMaxRequestsReached.Inc()
	if c.http2 {
		c.startDrain()
		return
	}
	as.closeConn = true
}

// startDrain starts the connection's drain sequence: HTTP/2 and HTTP/3
// send GOAWAY (the codec closes the connection once its streams finish or
// the drain timeout ends), HTTP/1.1 answers its next responses with
// connection: close. The listener's drain (onDrain),
// max_connection_duration and max_requests_per_connection share it; the
// first one closes drainCh.
func (c *conn) startDrain() {
	c.draining.Store(true)
	c.once.Do(func() { close(c.drainCh) })
}

// armMaxConnectionDuration starts the max_connection_duration timer of a
// connection accepted at start, mux telling whether it is HTTP/2 or HTTP/3.
// It returns the function that stops it; nil when there is no limit.
//
// Envoy's onConnectionDurationTimeout counts downstream_cx_max_duration_reached
// and starts the drain sequence: "the connection will be closed after the
// drain timeout period if there are no active streams". An HTTP/1.1
// connection busy at that moment answers with connection: close and closes
// after the response; an idle one is closed when drain_timeout ends unless a
// request came in meanwhile (whose response then carries connection: close).
func (c *conn) armMaxConnectionDuration(start time.Time, mux bool) (stop func()) {
	d := c.cfg.MaxConnectionDuration
	if d <= 0 {
		return nil
	}
	var closeIdle atomic.Pointer[time.Timer]
	t := time.AfterFunc(d-time.Since(start), func() {
		c.cfg.Stats.DownstreamCxMaxDurationReached.Inc()
		c.startDrain()
		if mux {
			return
		}
		closeIdle.Store(time.AfterFunc(c.cfg.DrainTimeout, func() {
			if c.state.CompareAndSwap(connIdle, connClosed) {
				c.raw.Close()
			}
		}))
	})
	return func() {
		t.Stop()
		// A close that did not run yet is not needed any more; one that
		// races with this closes a connection already being closed.
		if ci := closeIdle.Load(); ci != nil {
			ci.Stop()
		}
	}
}
