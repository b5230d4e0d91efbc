package connmgr

import (
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// Header names the connection manager reads or writes.
const (
	hdrXForwardedFor   = "x-forwarded-for"
	hdrXForwardedProto = "x-forwarded-proto"
	hdrXRequestID      = "x-request-id"
	hdrXEnvoyInternal  = "x-envoy-internal"
	hdrServer          = "server"
	hdrDate            = "date"
	hdrVia             = "via"
	hdrConnection      = "connection"
	hdrUpgrade         = "upgrade"
	hdrTE              = "te"
)

// hopByHop are connection-specific headers removed from requests and
// responses (RFC 9110 §7.6.1; Envoy's ConnectionManagerUtility).
var hopByHop = [...]string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}

// externalSanitized are the x-envoy-* request headers Envoy removes from
// requests that come from outside (use_remote_address and not internal):
// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#http-header-sanitizing
var externalSanitized = [...]string{
	"x-envoy-decorator-operation",
	"x-envoy-downstream-service-cluster",
	"x-envoy-downstream-service-node",
	"x-envoy-expected-rq-timeout-ms",
	"x-envoy-external-address",
	"x-envoy-force-trace",
	"x-envoy-internal",
	"x-envoy-ip-tags",
	"x-envoy-max-retries",
	"x-envoy-retry-grpc-on",
	"x-envoy-retry-on",
	"x-envoy-upstream-alt-stat-name",
	"x-envoy-upstream-rq-per-try-timeout-ms",
	"x-envoy-upstream-rq-timeout-alt-response",
	"x-envoy-upstream-rq-timeout-ms",
	"x-envoy-hedge-on-per-try-timeout",
}

// mutateRequestHeaders applies Envoy's request header handling
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers).
// It returns false when it answered the request itself.
func (as *stream) mutateRequestHeaders(h *hhttp.Headers) bool {
	cfg := as.cfg
	for _, n := range hopByHop {
		if as.upgradeReq && (n == hdrConnection || n == hdrUpgrade) {
			// Envoy keeps them on upgrades (upgrade.go).
			continue
		}
		h.Del(n)
	}
	if te, ok := h.Lookup(hdrTE); ok && !strings.EqualFold(strings.TrimSpace(te), "trailers") {
		// Envoy keeps te only when it is "trailers".
		h.Del(hdrTE)
	}

	internal := false
	if cfg.UseRemoteAddress {
		// The peer of the socket is the client.
		remote := as.c.nc.Remote
		as.remote = remote
		internal = isInternal(remote.Addr())
		if !cfg.SkipXffAppend && remote.IsValid() {
			appendXFF(h, remote.Addr().String())
		}
		if as.c.nc.TLS {
			h.Set(hdrXForwardedProto, "https")
		} else {
			h.Set(hdrXForwardedProto, "http")
		}
	} else {
		// The client is the entry of x-forwarded-for that is
		// xff_num_trusted_hops from the right.
		if xff := h.Get(hdrXForwardedFor); xff != "" {
			if a, ok := xffAddress(xff, cfg.XffNumTrustedHops); ok {
				as.remote = netip.AddrPortFrom(a, 0)
				internal = isInternal(a) && !strings.Contains(xff, ",")
			}
		}
		if !h.Has(hdrXForwardedProto) {
			if as.c.nc.TLS {
				h.Add(hdrXForwardedProto, "https")
			} else {
				h.Add(hdrXForwardedProto, "http")
			}
		}
	}
	as.info.DownstreamRemoteAddress = as.remote
	if cfg.UseRemoteAddress {
		if internal {
			h.Set(hdrXEnvoyInternal, "true")
		} else {
			for _, n := range externalSanitized {
				h.Del(n)
			}
		}
	} else if !internal {
		h.Del(hdrXEnvoyInternal)
	}

	if cfg.Via != "" {
		appendVia(h, cfg.Via)
	}

	if cfg.GenerateRequestID {
		id, ok := h.Lookup(hdrXRequestID)
		if !ok || id == "" || (cfg.UseRemoteAddress && !internal && !cfg.PreserveExternalRequestID) {
			var dst []byte
			if hs, ok := as.s.(hhttp.HeaderScratch); ok {
				dst = hs.Scratch(requestIDLen)
			}
			id = newRequestID(dst)
			h.Set(hdrXRequestID, id)
		}
		as.info.RequestID = id
	} else {
		as.info.RequestID = h.Get(hdrXRequestID)
	}
	// Envoy mutates x-forwarded-client-cert last (mutateRequestHeaders).
	mutateXFCC(h, cfg.ForwardClientCert, &as.c.xfcc)
	return true
}

// mutateResponseHeaders applies Envoy's response header handling: date
// (when absent), server, connection: close when the connection ends, x-request-id when
// configured, hop-by-hop removal.
func (as *stream) mutateResponseHeaders(h *hhttp.Headers) {
	cfg := as.cfg
	keepUpgrade := as.keepUpgradeHeaders(h)
	for _, n := range hopByHop {
		if keepUpgrade && (n == hdrConnection || n == hdrUpgrade) {
			continue
		}
		h.Del(n)
	}
	// Envoy keeps the upstream's date and adds one when absent.
	h.SetIfAbsent(hdrDate, currentDate())
	switch cfg.ServerHeaderTransformation {
	case Overwrite:
		h.Set(hdrServer, cfg.ServerName)
	case AppendIfAbsent:
		h.SetIfAbsent(hdrServer, cfg.ServerName)
	}
	if cfg.AlwaysSetRequestIDInResponse && as.info.RequestID != "" {
		h.Set(hdrXRequestID, as.info.RequestID)
	}
	if cfg.Via != "" {
		appendVia(h, cfg.Via)
	}
	// On HTTP/1.1 a response sent before the whole request arrived closes
	// the connection, so that an unread body can never be taken for the
	// next request.
	if !as.c.http2 && (as.closeConn || as.c.draining.Load() || !as.requestComplete) {
		as.closeConn = true
		if !keepUpgrade && !(as.upgrade && as.tunnelResponse(h)) {
			h.Set(hdrConnection, "close")
		}
	}
}

func appendXFF(h *hhttp.Headers, addr string) {
	if cur, ok := h.Lookup(hdrXForwardedFor); ok && cur != "" {
		h.Set(hdrXForwardedFor, cur+","+addr)
		return
	}
	h.Set(hdrXForwardedFor, addr)
}

func appendVia(h *hhttp.Headers, via string) {
	if cur, ok := h.Lookup(hdrVia); ok && cur != "" {
		h.Set(hdrVia, cur+", "+via)
		return
	}
	h.Set(hdrVia, via)
}

// xffAddress returns the address hops entries from the right of xff
// (Envoy: "the trusted client address is the n-th address from the right
// where n is xff_num_trusted_hops + 1").
func xffAddress(xff string, hops int) (netip.Addr, bool) {
	end := len(xff)
	for i := 0; ; i++ {
		start := strings.LastIndexByte(xff[:end], ',') + 1
		if i == hops {
			a, err := netip.ParseAddr(strings.TrimSpace(xff[start:end]))
			return a.Unmap(), err == nil
		}
		if start == 0 {
			return netip.Addr{}, false
		}
		end = start - 1
	}
}

// isInternal reports an RFC 1918 / RFC 4193 / loopback address, Envoy's
// definition of an internal request source.
func isInternal(a netip.Addr) bool {
	return a.IsValid() && (a.IsPrivate() || a.IsLoopback())
}

// requestIDLen is the length of a formatted UUID.
const requestIDLen = 36

// newRequestID returns a random UUID version 4, as Envoy's default request
// ID extension generates. It formats into dst when dst has requestIDLen
// bytes (lent by the codec, see hhttp.HeaderScratch) and returns a string
// over them; otherwise it allocates.
func newRequestID(dst []byte) string {
	var b [16]byte
	x, y := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		b[i] = byte(x >> (8 * i))
		b[8+i] = byte(y >> (8 * i))
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	const hex = "0123456789abcdef"
	var arr [requestIDLen]byte
	out := arr[:]
	if len(dst) == requestIDLen {
		out = dst
	}
	j := 0
	for i := 0; i < 16; i++ {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j] = hex[b[i]>>4]
		out[j+1] = hex[b[i]&0xf]
		j += 2
	}
	if len(dst) == requestIDLen {
		return unsafe.String(unsafe.SliceData(dst), requestIDLen)
	}
	return string(out)
}

// cachedDate holds the IMF-fixdate of the current second.
type cachedDate struct {
	sec  int64
	text string
}

var dateCache atomic.Pointer[cachedDate]

// currentDate returns the HTTP date of now, formatted once per second.
func currentDate() string {
	now := time.Now()
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.text
	}
	d := &cachedDate{sec: sec, text: now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")}
	dateCache.Store(d)
	return d.text
}
