// Package streaminfo holds what is known about one downstream stream or
// connection while it runs: timings, addresses, bytes, the response code and
// details, the response flags, the upstream chosen. Access loggers read it;
// the connection manager, router and tcp_proxy write it.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage
//
// It imports nothing of herald's but internal/http (for headers); dynamic
// metadata uses protobuf's well-known Struct, as Envoy's does.
package streaminfo

import (
	"net/netip"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

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

// flagLong holds Envoy's long names, as printed by %RESPONSE_FLAGS_LONG%
// (source/common/stream_info/utility.h, ResponseFlagUtils).
var flagLong = [...]string{
	"FailedLocalHealthCheck", "NoHealthyUpstream", "UpstreamRequestTimeout", "LocalReset",
	"UpstreamRemoteReset", "UpstreamConnectionFailure", "UpstreamConnectionTermination",
	"UpstreamOverflow", "NoRouteFound", "DelayInjected", "FaultInjected", "RateLimited",
	"UnauthorizedExternalService", "RateLimitServiceError", "DownstreamConnectionTermination",
	"UpstreamRetryLimitExceeded", "StreamIdleTimeout", "InvalidEnvoyRequestHeaders",
	"DownstreamProtocolError", "UpstreamMaxStreamDurationReached", "ResponseFromCacheFilter",
	"NoFilterConfigFound", "DurationTimeout", "UpstreamProtocolError", "NoClusterFound",
	"OverloadManagerTerminated", "DnsResolutionFailed", "DropOverload", "DownstreamRemoteReset",
}

// AppendTo appends the flags comma separated, in Envoy's short form (or long
// form when long is set), or "-" when none is set. It does not allocate
// beyond growing dst.
func (f ResponseFlag) AppendTo(dst []byte, long bool) []byte {
	if f == 0 {
		return append(dst, '-')
	}
	names := flagShort[:]
	if long {
		names = flagLong[:]
	}
	first := true
	for i := 0; ResponseFlag(1)<<i < lastFlag; i++ {
		if f&(1<<i) != 0 {
			if !first {
				dst = append(dst, ',')
			}
			dst = append(dst, names[i]...)
			first = false
		}
	}
	return dst
}

// FlagByShortName returns the flag Envoy prints as name ("UH", "NR"...), as
// accepted by the access log response_flag_filter.
func FlagByShortName(name string) (ResponseFlag, bool) {
	for i, n := range flagShort {
		if n == name {
			return ResponseFlag(1) << i, true
		}
	}
	return 0, false
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
	// LastDownstreamRxByte is when the last byte of the request arrived
	// (%REQUEST_DURATION%); LastUpstreamTxByte when the last byte of the
	// request went upstream (%REQUEST_TX_DURATION%). Zero when never reached.
	LastDownstreamRxByte time.Time
	LastUpstreamTxByte   time.Time

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
	// JA3Hash is the client's JA3 fingerprint (MD5, lowercase hex) when
	// tls_inspector computed it, else "" (%TLS_JA3_FINGERPRINT%).
	JA3Hash string

	// UpstreamRequestAttemptCount is how many times the request was tried
	// upstream; 0 when it never was (%UPSTREAM_REQUEST_ATTEMPT_COUNT%).
	UpstreamRequestAttemptCount uint32
	// ConnectionID identifies the downstream connection within the process
	// (%CONNECTION_ID%); 0 when unknown.
	ConnectionID uint64
	// HealthCheck is set by the health_check filter when the request is a
	// health check (read by the access log not_health_check_filter).
	HealthCheck bool

	// DynamicMetadata is Envoy's per-stream dynamic metadata
	// (StreamInfo::dynamicMetadata().filter_metadata): one Struct per
	// namespace, the namespace being by convention the writing filter's
	// name ("envoy.filters.http.jwt_authn"). Nil until a filter sets some;
	// write it through SetDynamicMetadata and read it through
	// DynamicMetadataFor. Later filters of the stream (ext_authz, rbac
	// metadata matchers, header_to_metadata) and the access log
	// (%DYNAMIC_METADATA(NAMESPACE:KEY)%) read it; it is owned by the
	// stream goroutine like the rest of Info.
	// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/data_sharing_between_filters
	DynamicMetadata map[string]*structpb.Struct
}

// SetDynamicMetadata merges fields into the namespace ns of the dynamic
// metadata, as Envoy's setDynamicMetadata does (Struct.MergeFrom: a key
// already present is replaced by the new value). The stream keeps fields:
// the caller must not change it afterwards.
func (i *Info) SetDynamicMetadata(ns string, fields *structpb.Struct) {
	if i.DynamicMetadata == nil {
		i.DynamicMetadata = make(map[string]*structpb.Struct, 1)
	}
	cur := i.DynamicMetadata[ns]
	if cur == nil {
		i.DynamicMetadata[ns] = fields
		return
	}
	if cur.Fields == nil {
		cur.Fields = make(map[string]*structpb.Value, len(fields.GetFields()))
	}
	for k, v := range fields.GetFields() {
		cur.Fields[k] = v
	}
}

// DynamicMetadataFor returns the namespace ns of the dynamic metadata, or
// nil when no filter set it. Callers must not modify it.
func (i *Info) DynamicMetadataFor(ns string) *structpb.Struct {
	return i.DynamicMetadata[ns]
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

// FilterStateDynamicMetadata is the connection filter-state key
// (network.Conn.SetFilterState) under which listener filters keep the
// connection's dynamic metadata, Envoy's connection-level
// StreamInfo::dynamicMetadata(): a map[string]*structpb.Struct by
// namespace (the proxy_protocol listener filter's TLV rules write it). A
// connection's own record (tcp_proxy's Info) starts from it; HTTP streams do
// not see it, as in Envoy (https://github.com/envoyproxy/envoy/issues/19046).
const FilterStateDynamicMetadata = "herald.connection.dynamic_metadata"
