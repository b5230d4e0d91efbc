package grpcstats

import (
	"encoding/binary"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	return &Filter{cfg: c, cb: cb}
}

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg *Config
	cb  httpfilter.Callbacks

	grpcRequest, grpcResponse bool
	// track: the path names a gRPC service and method
	// (Envoy's do_stat_tracking_).
	track           bool
	service, method string
	stats           *methodStats

	request, response FrameInspector
	// pendingRequests are request messages counted before the router
	// picked the cluster; charged once it has.
	pendingRequests uint64
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// GrpcStatsFilter::decodeHeaders. Requests not in the allowlist (or every
// request without stats_for_all_methods) are counted without the
// service/method part.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	path, ok := h.Lookup(hhttp.Path)
	f.grpcRequest = ok && hhttp.IsGRPCContentType(h.Get("content-type"))
	if !f.grpcRequest {
		return httpfilter.Continue
	}
	service, method, ok := resolve(path)
	f.track = ok
	if ok && (f.cfg.statsForAllMethods || f.cfg.allowlist[[2]string{service, method}]) {
		f.service, f.method = service, method
	}
	return httpfilter.Continue
}

// resolveStats returns the stream's stats once the router picked a
// cluster (Envoy takes clusterInfo() in decodeHeaders; herald's router
// records the cluster it picked in the stream info), else nil.
func (f *Filter) resolveStats() *methodStats {
	if f.stats != nil || !f.track {
		return f.stats
	}
	cluster := f.cb.StreamInfo().UpstreamCluster
	if cluster == "" {
		return nil
	}
	f.stats = f.cfg.statsFor(cluster, f.service, f.method)
	if f.pendingRequests > 0 {
		f.stats.counter(f.cfg.store, &f.stats.reqs, statRequestMessageCount).Add(f.pendingRequests)
		f.pendingRequests = 0
	}
	return f.stats
}

// DecodeData implements httpfilter.DecoderFilter: counts request messages.
func (f *Filter) DecodeData(data []byte, _ bool) httpfilter.Status {
	if !f.grpcRequest {
		return httpfilter.Continue
	}
	if delta := f.request.Inspect(data); delta > 0 && f.track {
		if m := f.resolveStats(); m != nil {
			m.counter(f.cfg.store, &m.reqs, statRequestMessageCount).Add(delta)
		} else {
			f.pendingRequests += delta
		}
	}
	return httpfilter.Continue
}

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// EncodeHeaders implements httpfilter.EncoderFilter: a trailers-only
// response (or any response headers with grpc-status) is charged here.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	f.grpcResponse = hhttp.IsGRPCResponseHeaders(h, endStream)
	if m := f.resolveStats(); m != nil {
		if st, ok := h.Lookup("grpc-status"); ok {
			m.chargeStatus(f.cfg.store, st)
		}
		if endStream {
			f.chargeUpstreamTime(m)
		}
	}
	return httpfilter.Continue
}

// EncodeData implements httpfilter.EncoderFilter: counts response messages.
func (f *Filter) EncodeData(data []byte, _ bool) httpfilter.Status {
	if !f.grpcResponse {
		return httpfilter.Continue
	}
	if delta := f.response.Inspect(data); delta > 0 {
		if m := f.resolveStats(); m != nil {
			m.counter(f.cfg.store, &m.resp, statResponseMessageCount).Add(delta)
		}
	}
	return httpfilter.Continue
}

// EncodeTrailers implements httpfilter.EncoderFilter: the call's
// grpc-status is charged.
func (f *Filter) EncodeTrailers(t *hhttp.Headers) httpfilter.Status {
	if !f.grpcRequest {
		return httpfilter.Continue
	}
	if m := f.resolveStats(); m != nil {
		if st, ok := t.Lookup("grpc-status"); ok {
			m.chargeStatus(f.cfg.store, st)
		}
		f.chargeUpstreamTime(m)
	}
	return httpfilter.Continue
}

// chargeUpstreamTime records upstream_rq_time with enable_upstream_stats.
// Envoy measures last upstream byte received minus last byte sent; herald
// records from the last byte sent upstream (or the first, while the
// request still streams) to now, when the response ends.
func (f *Filter) chargeUpstreamTime(m *methodStats) {
	if !f.cfg.enableUpstreamStats {
		return
	}
	info := f.cb.StreamInfo()
	from := info.LastUpstreamTxByte
	if from.IsZero() {
		from = info.FirstUpstreamTxByte
	}
	if from.IsZero() {
		return
	}
	m.upstreamRqTime(f.cfg.store).Record(uint64(time.Since(from).Milliseconds()))
}

// OnDestroy implements httpfilter.Destroyer: request messages counted
// before a cluster was known are charged if one was picked since.
func (f *Filter) OnDestroy() {
	if f.pendingRequests > 0 {
		f.resolveStats()
	}
}

// FrameInspector counts gRPC messages (length-prefixed frames) in a byte
// stream delivered in arbitrary chunks (Envoy's Grpc::FrameInspector).
// The zero value is at the start of a stream.
type FrameInspector struct {
	count uint64
	// hdr collects the 5-byte frame header; nhdr is how much of it is in.
	hdr  [5]byte
	nhdr int
	// remaining is the payload left of the current frame.
	remaining uint64
}

// Inspect consumes data and returns how many new frames started in it.
func (fi *FrameInspector) Inspect(data []byte) uint64 {
	var n uint64
	for len(data) > 0 {
		if fi.remaining > 0 {
			skip := min(uint64(len(data)), fi.remaining)
			fi.remaining -= skip
			data = data[skip:]
			continue
		}
		if fi.nhdr == 0 {
			// Envoy counts a frame when its flag byte arrives.
			n++
		}
		c := copy(fi.hdr[fi.nhdr:], data)
		fi.nhdr += c
		data = data[c:]
		if fi.nhdr == len(fi.hdr) {
			fi.remaining = uint64(binary.BigEndian.Uint32(fi.hdr[1:]))
			fi.nhdr = 0
		}
	}
	fi.count += n
	return n
}

// FrameCount is the number of frames started so far.
func (fi *FrameInspector) FrameCount() uint64 { return fi.count }
