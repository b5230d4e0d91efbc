// Package streaminfo holds what is known about one downstream stream or
// connection while it runs: timings, addresses, bytes, the response code and
// details, the response flags, the upstream chosen. Access loggers read it;
// the connection manager, router and tcp_proxy write it.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage
//
// It imports nothing of herald's but internal/http (for headers).
package streaminfo

import (
	"net/netip"
	"strings"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// ResponseFlag is one of Envoy's response flags, a bit each.
type ResponseFlag uint64

// Envoy's response flags, in the order Envoy prints them
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#config-access-log-format-response-flags).
const (
	FailedLocalHealthCheck           ResponseFlag = 1 << iota // LH
	NoHealthyUpstream                                         // UH
	UpstreamRequestTimeout                                    // UT
	LocalReset                                                // LR
	UpstreamRemoteReset                                       // UR
	UpstreamConnectionFailure                                 // UF
	UpstreamConnectionTermination                             // UC
	UpstreamOverflow                                          // UO
	NoRouteFound                                              // NR
	DelayInjected                                             // DI
	FaultInjected                                             // FI
	RateLimited                                               // RL
	UnauthorizedExternalService                               // UAEX
	RateLimitServiceError                                     // RLSE
	DownstreamConnectionTermination                           // DC
	UpstreamRetryLimitExceeded                                // URX
	StreamIdleTimeout                                         // SI
	InvalidEnvoyRequestHeaders                                // IH
	DownstreamProtocolError                                   // DPE
	UpstreamMaxStreamDurationReached                          // UMSDR
	ResponseFromCacheFilter                                   // RFCF
	NoFilterConfigFound                                       // NFCF
	DurationTimeout                                           // DT
	UpstreamProtocolError                                     // UPE
	NoClusterFound                                            // NC
	OverloadManager                                           // OM
	DnsResolutionFailed                                       // DF
	DropOverLoad                                              // DO
	DownstreamRemoteReset                                     // DR
	lastFlag
)

var flagShort = [...]string{
	"LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE",
	"DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO", "DR",
}

// String returns the flags in Envoy's short form, comma separated, or "-".
func (f ResponseFlag) String() string {
	if f == 0 {
		return "-"
	}
	var b strings.Builder
	for i := 0; ResponseFlag(1)<<i < lastFlag; i++ {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(flagShort[i])
		}
	}
	return b.String()
}

// Info is the record of one stream (HTTP) or connection (TCP). It is owned by
// the goroutine serving the stream; access loggers read it after the stream
// ends.
type Info struct {
	StartTime time.Time
	// EndTime is set when the stream completes.
	EndTime time.Time
	// FirstUpstreamTxByte, LastUpstreamRxByte, FirstUpstreamRxByte are zero
	// when never reached.
	FirstUpstreamTxByte  time.Time
	FirstUpstreamRxByte  time.Time
	LastDownstreamTxByte time.Time

	// Protocol is "HTTP/1.0", "HTTP/1.1", "HTTP/2" or "" for TCP.
	Protocol string

	DownstreamRemoteAddress netip.AddrPort
	DownstreamLocalAddress  netip.AddrPort
	// DirectRemoteAddress is the peer of the socket, before x-forwarded-for.
	DirectRemoteAddress netip.AddrPort

	RequestHeaders   *hhttp.Headers
	ResponseHeaders  *hhttp.Headers
	ResponseTrailers *hhttp.Headers

	// ResponseCode is 0 until a response starts.
	ResponseCode                 int
	ResponseCodeDetails          string
	ConnectionTerminationDetails string
	Flags                        ResponseFlag

	BytesReceived         uint64
	BytesSent             uint64
	UpstreamBytesSent     uint64
	UpstreamBytesReceived uint64

	UpstreamCluster                string
	UpstreamHost                   string // "ip:port", "" when none was chosen
	UpstreamLocalAddress           string
	UpstreamTransportFailureReason string

	RouteName          string
	VirtualClusterName string
	RequestID          string
	// RequestedServerName is the SNI the client sent.
	RequestedServerName string
}

// SetFlag records f.
func (i *Info) SetFlag(f ResponseFlag) { i.Flags |= f }

// HasFlag reports whether f is recorded.
func (i *Info) HasFlag(f ResponseFlag) bool { return i.Flags&f != 0 }

// Duration is the total time of the stream, or until now while it runs.
func (i *Info) Duration() time.Duration {
	if i.EndTime.IsZero() {
		return time.Since(i.StartTime)
	}
	return i.EndTime.Sub(i.StartTime)
}
