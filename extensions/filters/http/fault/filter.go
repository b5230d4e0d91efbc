package fault

import (
	"strconv"
	"time"

	"github.com/herald-proxy/herald/internal/fractional"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg *Config
	cb  httpfilter.Callbacks
	s   *Settings
	// active: this stream counts in active_faults (at most once).
	active bool
	// cluster is x-envoy-downstream-service-cluster when stats use it.
	cluster string
	// aborted: the filter answered; later body events stop.
	aborted bool
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// FaultFilter::decodeHeaders. A delay runs here, on the stream goroutine,
// then the abort is decided, as postDelayInjection does.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	s := f.cfg.settings
	if r := f.cb.Route(); r != nil {
		if ps, ok := r.PerFilterConfig(f.cfg.name).(*Settings); ok {
			s = ps
		}
	}
	f.s = s
	if !s.matchesDownstreamNodes(h) {
		return httpfilter.Continue
	}
	for i := range s.headers {
		if !s.headers[i].Matches(h) {
			return httpfilter.Continue
		}
	}
	if !s.disableClusterStats {
		f.cluster = h.Get(hdrDownstreamCluster)
	}
	if d, ok := s.delayDuration(h); ok && f.tryIncActiveFaults() {
		f.countCluster("delays_injected")
		f.cfg.stats.delaysInjected.Inc()
		f.cb.StreamInfo().SetFlag(streaminfo.DelayInjected)
		if !f.sleep(d) {
			// The stream was aborted (timeout, downstream reset) while
			// delayed: the connection manager finishes it.
			return httpfilter.Stop
		}
		if code, grpc, ok := s.abortStatus(h); ok {
			f.abort(code, grpc)
			return httpfilter.Stop
		}
		// No other fault: the delay no longer counts as active.
		f.cfg.stats.activeFaults.Dec()
		f.active = false
		return httpfilter.Continue
	}
	if code, grpc, ok := s.abortStatus(h); ok && f.tryIncActiveFaults() {
		f.abort(code, grpc)
		return httpfilter.Stop
	}
	return httpfilter.Continue
}

// sleep waits d or until the stream's context ends; it reports whether the
// whole delay passed.
func (f *Filter) sleep(d time.Duration) bool {
	ctx := f.cb.Context()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// abort answers with the fault's status, Envoy's abortWithStatus.
func (f *Filter) abort(code, grpc int) {
	f.aborted = true
	f.countCluster("aborts_injected")
	f.cfg.stats.abortsInjected.Inc()
	f.cb.StreamInfo().SetFlag(streaminfo.FaultInjected)
	var modify func(*hhttp.Headers)
	if grpc >= 0 {
		// The connection manager maps the HTTP status to grpc-status for
		// gRPC requests; the fault's own gRPC status replaces it.
		status := strconv.Itoa(grpc)
		modify = func(h *hhttp.Headers) {
			if h.Has("grpc-status") {
				h.Set("grpc-status", status)
			}
		}
	}
	f.cb.SendLocalReply(code, f.s.abort.body, Details, modify)
}

// tryIncActiveFaults is Envoy's: one active fault per stream, refused (and
// faults_overflow counted) at max_active_faults.
func (f *Filter) tryIncActiveFaults() bool {
	if f.active {
		return true
	}
	st := &f.cfg.stats
	if f.s.hasMax && uint64(max(st.activeFaults.Value(), 0)) >= f.s.maxActiveFaults {
		st.faultsOverflow.Inc()
		return false
	}
	st.activeFaults.Inc()
	f.active = true
	return true
}

// countCluster counts http.<prefix>.fault.<downstream cluster>.<name>,
// Envoy's per-downstream-cluster stats (allocating, but only for requests
// that carry x-envoy-downstream-service-cluster and get a fault).
func (f *Filter) countCluster(name string) {
	if f.cluster == "" {
		return
	}
	f.cfg.store.Counter(f.cluster + "." + name).Inc()
}

func (s *Settings) matchesDownstreamNodes(h *hhttp.Headers) bool {
	if len(s.downstreamNodes) == 0 {
		return true
	}
	node, ok := h.Lookup(hdrDownstreamNode)
	if !ok {
		return false
	}
	_, ok = s.downstreamNodes[node]
	return ok
}

// delayDuration is Envoy's delayDuration: the fixed delay, or the
// x-envoy-fault-delay-request header's milliseconds for header_delay, when
// the percentage draw hits; zero means no delay.
func (s *Settings) delayDuration(h *hhttp.Headers) (time.Duration, bool) {
	d := s.delay
	if d == nil {
		return 0, false
	}
	pct := d.percentage
	if d.fromHeader {
		pct = headerPercentage(h, hdrDelayPercentage, pct)
	}
	if !pct.Hit() {
		return 0, false
	}
	dur := d.fixed
	if d.fromHeader {
		ms, ok := headerUint(h, hdrDelay)
		if !ok {
			return 0, false
		}
		dur = time.Duration(ms) * time.Millisecond
	}
	return dur, dur > 0
}

// abortStatus is Envoy's abortStatus: the HTTP status (200 with the gRPC
// status when only grpc_status applies; grpc is -1 when none) when the
// percentage draw hits.
func (s *Settings) abortStatus(h *hhttp.Headers) (code, grpc int, ok bool) {
	a := s.abort
	if a == nil {
		return 0, -1, false
	}
	pct := a.percentage
	if a.fromHeader {
		pct = headerPercentage(h, hdrAbortPercentage, pct)
	}
	if !pct.Hit() {
		return 0, -1, false
	}
	if !a.fromHeader {
		if a.hasGRPC {
			return 200, a.grpcStatus, true
		}
		return a.httpStatus, -1, true
	}
	// "must be in the range [200, 600)"; else the gRPC header.
	if v, ok := headerUint(h, hdrAbort); ok && v >= 200 && v < 600 {
		return int(v), -1, true
	}
	if v, ok := headerUint(h, hdrAbortGRPC); ok && v <= 1<<31 {
		return 200, int(v), true
	}
	return 0, -1, false
}

// headerPercentage is Envoy's HeaderPercentageProvider: the header's
// numerator, capped at the configured one, over the configured denominator.
func headerPercentage(h *hhttp.Headers, name string, def fractional.Percent) fractional.Percent {
	v, ok := headerUint(h, name)
	if !ok || v > 1<<32-1 {
		return def
	}
	return fractional.Percent{Numerator: min(v, def.Numerator), Denominator: def.Denominator}
}

// headerUint parses the first value of an (untrusted) header, as Envoy's
// absl::SimpleAtoi.
func headerUint(h *hhttp.Headers, name string) (uint64, bool) {
	v, ok := h.Lookup(name)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status {
	if f.aborted {
		return httpfilter.Stop
	}
	return httpfilter.Continue
}

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status {
	if f.aborted {
		return httpfilter.Stop
	}
	return httpfilter.Continue
}

// OnDestroy implements httpfilter.Destroyer: an active fault ends with its
// stream.
func (f *Filter) OnDestroy() {
	if f.active {
		f.cfg.stats.activeFaults.Dec()
	}
	*f = Filter{}
	filterPool.Put(f)
}
