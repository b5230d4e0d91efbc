package accesslog

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

type opcode uint8

const (
	opLiteral opcode = iota
	opConstant
	opRequestHeader
	opResponseHeader
	opResponseTrailer
	opStartTime
	opResponseCode
	opResponseCodeDetails
	opConnectionTerminationDetails
	opResponseFlags
	opResponseFlagsLong
	opBytesReceived
	opBytesSent
	opUpstreamWireBytesSent
	opUpstreamWireBytesReceived
	opDuration
	opRequestDuration
	opRequestTxDuration
	opResponseDuration
	opResponseTxDuration
	opProtocol
	opUpstreamHost
	opUpstreamHostWithoutPort
	opUpstreamHostPort
	opUpstreamCluster
	opUpstreamLocalAddress
	opUpstreamLocalAddressWithoutPort
	opUpstreamLocalPort
	opUpstreamTransportFailureReason
	opUpstreamRequestAttemptCount
	opDownstreamRemoteAddress
	opDownstreamRemoteAddressWithoutPort
	opDownstreamRemotePort
	opDownstreamLocalAddress
	opDownstreamLocalAddressWithoutPort
	opDownstreamLocalPort
	opDownstreamDirectRemoteAddress
	opDownstreamDirectRemoteAddressWithoutPort
	opDownstreamDirectRemotePort
	opRouteName
	opVirtualClusterName
	opRequestedServerName
	opStreamID
	opConnectionID
	opDynamicMetadata
	opTLSJA3Fingerprint
)

// valueKind is what an operator produced: nothing (Envoy's nullopt, printed
// "-" or null), a string, or a number (kept a number in typed JSON).
type valueKind uint8

const (
	valueUnset valueKind = iota
	valueString
	valueNumber
)

// op is one compiled piece of a format: a literal or a command operator.
type op struct {
	code opcode
	// lit is the literal text (opLiteral) or the constant's value
	// (opConstant, set when constSet).
	lit      string
	constSet bool
	// header and altHeader are the lowercase names of %REQ(X?Y)%.
	header, altHeader string
	// maxLen truncates header values; -1 for no limit.
	maxLen int
	// time is %START_TIME(...)%'s compiled format; nil for the default.
	time *timeFormat
	// metadata is %DYNAMIC_METADATA(NAMESPACE:KEY...)%'s namespace and key path.
	metadata *metadataPath
}

// appendValue appends the operator's raw value (not escaped) to dst. When it
// reports valueUnset, what it appended must be discarded.
func (o *op) appendValue(dst []byte, info *streaminfo.Info) ([]byte, valueKind) {
	switch o.code {
	case opLiteral:
		return append(dst, o.lit...), valueString
	case opConstant:
		if !o.constSet {
			return dst, valueUnset
		}
		return append(dst, o.lit...), valueString
	case opRequestHeader:
		return o.appendHeader(dst, info.RequestHeaders)
	case opResponseHeader:
		return o.appendHeader(dst, info.ResponseHeaders)
	case opResponseTrailer:
		return o.appendHeader(dst, info.ResponseTrailers)
	case opStartTime:
		if info.StartTime.IsZero() {
			return dst, valueUnset
		}
		if o.time == nil {
			return appendDefaultTime(dst, info.StartTime), valueString
		}
		return o.time.append(dst, info.StartTime), valueString
	case opResponseCode:
		// Envoy: responseCode().value_or(0), so a stream without a response
		// logs 0 (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#config-access-log-format-response-code).
		return strconv.AppendUint(dst, uint64(max(info.ResponseCode, 0)), 10), valueNumber
	case opResponseCodeDetails:
		return appendString(dst, info.ResponseCodeDetails)
	case opConnectionTerminationDetails:
		return appendString(dst, info.ConnectionTerminationDetails)
	case opResponseFlags:
		return info.Flags.AppendTo(dst, false), valueString
	case opResponseFlagsLong:
		return info.Flags.AppendTo(dst, true), valueString
	case opBytesReceived:
		return strconv.AppendUint(dst, info.BytesReceived, 10), valueNumber
	case opBytesSent:
		return strconv.AppendUint(dst, info.BytesSent, 10), valueNumber
	case opUpstreamWireBytesSent:
		return strconv.AppendUint(dst, info.UpstreamBytesSent, 10), valueNumber
	case opUpstreamWireBytesReceived:
		return strconv.AppendUint(dst, info.UpstreamBytesReceived, 10), valueNumber
	case opDuration:
		return appendMillis(dst, info.StartTime, info.EndTime)
	case opRequestDuration:
		return appendMillis(dst, info.StartTime, info.LastDownstreamRxByte)
	case opRequestTxDuration:
		return appendMillis(dst, info.StartTime, info.LastUpstreamTxByte)
	case opResponseDuration:
		return appendMillis(dst, info.StartTime, info.FirstUpstreamRxByte)
	case opResponseTxDuration:
		return appendMillis(dst, info.FirstUpstreamRxByte, info.LastDownstreamTxByte)
	case opProtocol:
		return appendString(dst, info.Protocol)
	case opUpstreamHost:
		return appendString(dst, info.UpstreamHost)
	case opUpstreamHostWithoutPort:
		return appendString(dst, hostWithoutPort(info.UpstreamHost))
	case opUpstreamHostPort:
		return appendString(dst, portOf(info.UpstreamHost))
	case opUpstreamCluster:
		return appendString(dst, info.UpstreamCluster)
	case opUpstreamLocalAddress:
		return appendString(dst, info.UpstreamLocalAddress)
	case opUpstreamLocalAddressWithoutPort:
		return appendString(dst, hostWithoutPort(info.UpstreamLocalAddress))
	case opUpstreamLocalPort:
		return appendString(dst, portOf(info.UpstreamLocalAddress))
	case opUpstreamTransportFailureReason:
		// Envoy replaces spaces with '_' so the reason stays one token.
		if info.UpstreamTransportFailureReason == "" {
			return dst, valueUnset
		}
		for i := 0; i < len(info.UpstreamTransportFailureReason); i++ {
			c := info.UpstreamTransportFailureReason[i]
			if c == ' ' {
				c = '_'
			}
			dst = append(dst, c)
		}
		return dst, valueString
	case opUpstreamRequestAttemptCount:
		return strconv.AppendUint(dst, uint64(info.UpstreamRequestAttemptCount), 10), valueNumber
	case opDownstreamRemoteAddress:
		return appendAddrPort(dst, info.DownstreamRemoteAddress)
	case opDownstreamRemoteAddressWithoutPort:
		return appendAddr(dst, info.DownstreamRemoteAddress)
	case opDownstreamRemotePort:
		return appendPort(dst, info.DownstreamRemoteAddress)
	case opDownstreamLocalAddress:
		return appendAddrPort(dst, info.DownstreamLocalAddress)
	case opDownstreamLocalAddressWithoutPort:
		return appendAddr(dst, info.DownstreamLocalAddress)
	case opDownstreamLocalPort:
		return appendPort(dst, info.DownstreamLocalAddress)
	case opDownstreamDirectRemoteAddress:
		return appendAddrPort(dst, info.DirectRemoteAddress)
	case opDownstreamDirectRemoteAddressWithoutPort:
		return appendAddr(dst, info.DirectRemoteAddress)
	case opDownstreamDirectRemotePort:
		return appendPort(dst, info.DirectRemoteAddress)
	case opRouteName:
		return appendString(dst, info.RouteName)
	case opVirtualClusterName:
		return appendString(dst, info.VirtualClusterName)
	case opRequestedServerName:
		return appendString(dst, info.RequestedServerName)
	case opStreamID:
		return appendString(dst, info.RequestID)
	case opConnectionID:
		return strconv.AppendUint(dst, info.ConnectionID, 10), valueNumber
	case opDynamicMetadata:
		return o.appendDynamicMetadata(dst, info)
	case opTLSJA3Fingerprint:
		// Envoy: "The JA3 fingerprint (MD5 hash) of the TLS Client Hello"
		// when tls_inspector's enable_ja3_fingerprinting computed it
		// (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#command-operators).
		return appendString(dst, info.JA3Hash)
	}
	return dst, valueUnset
}

// appendHeader implements %REQ(X?Y):Z%: the first value of X, else of Y,
// truncated to Z bytes; unset when neither is present. A present but empty
// header is an empty string, not unset, as in Envoy.
func (o *op) appendHeader(dst []byte, h *hhttp.Headers) ([]byte, valueKind) {
	if h == nil {
		return dst, valueUnset
	}
	v, ok := h.Lookup(o.header)
	if !ok && o.altHeader != "" {
		v, ok = h.Lookup(o.altHeader)
	}
	if !ok {
		return dst, valueUnset
	}
	if o.maxLen >= 0 && len(v) > o.maxLen {
		v = v[:o.maxLen]
	}
	return append(dst, v...), valueString
}

// appendString treats "" as unset, as Envoy's string extractors do.
func appendString(dst []byte, s string) ([]byte, valueKind) {
	if s == "" {
		return dst, valueUnset
	}
	return append(dst, s...), valueString
}

// appendMillis appends to-from in whole milliseconds, unset when either end
// was never reached. Envoy truncates (duration_cast<milliseconds>).
func appendMillis(dst []byte, from, to time.Time) ([]byte, valueKind) {
	if from.IsZero() || to.IsZero() {
		return dst, valueUnset
	}
	return strconv.AppendInt(dst, to.Sub(from).Milliseconds(), 10), valueNumber
}

// appendAddrPort prints "1.2.3.4:80" or "[::1]:80", Envoy's asString.
func appendAddrPort(dst []byte, a netip.AddrPort) ([]byte, valueKind) {
	if !a.IsValid() {
		return dst, valueUnset
	}
	return a.AppendTo(dst), valueString
}

// appendAddr prints the IP without port and without brackets, Envoy's
// formatDownstreamAddressNoPort.
func appendAddr(dst []byte, a netip.AddrPort) ([]byte, valueKind) {
	if !a.IsValid() {
		return dst, valueUnset
	}
	return a.Addr().AppendTo(dst), valueString
}

func appendPort(dst []byte, a netip.AddrPort) ([]byte, valueKind) {
	if !a.IsValid() {
		return dst, valueUnset
	}
	return strconv.AppendUint(dst, uint64(a.Port()), 10), valueString
}

// hostWithoutPort strips ":port" and IPv6 brackets from "host:port".
func hostWithoutPort(s string) string {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.IndexByte(s, ']') > i {
		return s
	}
	if j := strings.IndexByte(s, ':'); j != i && s[0] != '[' {
		// A bare IPv6 address without port.
		return s
	}
	h := s[:i]
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return h
}

// portOf returns the port of "host:port", or "".
func portOf(s string) string {
	h := hostWithoutPort(s)
	if h == s {
		return ""
	}
	i := strings.LastIndexByte(s, ':')
	return s[i+1:]
}
