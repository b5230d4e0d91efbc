package accesslog

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/herald-proxy/herald/internal/streaminfo"
)

// DefaultFormat is Envoy's default access log format, used when a logger
// sets no format
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#default-format-string).
const DefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// unsetValue is what Envoy prints for an operator without a value.
const unsetValue = "-"

// Formatter turns a stream record into one log line. It is compiled once from
// a format and is immutable, so any number of goroutines may call Format.
type Formatter struct {
	// Immutable after construction:
	parts       []op      // text format; nil for JSON
	json        *jsonNode // JSON format; nil for text
	typed       bool      // JSON values keep their types (numbers, null)
	omitEmpty   bool      // unset values print "" (text) or are left out (JSON)
	contentType string
}

// Format appends the log line for info to dst and returns the extended
// slice. It allocates nothing for the common operators beyond growing dst.
func (f *Formatter) Format(dst []byte, info *streaminfo.Info) []byte {
	if f.json != nil {
		return f.formatJSON(dst, info)
	}
	for i := range f.parts {
		p := &f.parts[i]
		if p.code == opLiteral {
			dst = append(dst, p.lit...)
			continue
		}
		n := len(dst)
		var k valueKind
		dst, k = p.appendValue(dst, info)
		if k == valueUnset {
			dst = dst[:n]
			if !f.omitEmpty {
				dst = append(dst, unsetValue...)
			}
		}
	}
	return dst
}

// ContentType is the content_type of the SubstitutionFormatString the
// formatter was built from, or Envoy's default: "text/plain" for text and
// "application/json" for JSON.
func (f *Formatter) ContentType() string {
	if f.contentType != "" {
		return f.contentType
	}
	if f.json != nil {
		return "application/json"
	}
	return "text/plain"
}

// TextOptions tunes NewFormatterWithOptions.
type TextOptions struct {
	// OmitEmptyValues prints unset operators as "" instead of "-"
	// (SubstitutionFormatString.omit_empty_values). Default false.
	OmitEmptyValues bool
	// ContentType is reported by ContentType; "" means "text/plain".
	ContentType string
}

// NewFormatter compiles a text format string. An unknown or malformed
// command operator is a *ParseError naming it.
func NewFormatter(format string) (*Formatter, error) {
	return NewFormatterWithOptions(format, TextOptions{})
}

// NewFormatterWithOptions is NewFormatter with SubstitutionFormatString's
// options.
func NewFormatterWithOptions(format string, opts TextOptions) (*Formatter, error) {
	parts, err := parseFormat(format, false)
	if err != nil {
		return nil, err
	}
	return &Formatter{parts: parts, omitEmpty: opts.OmitEmptyValues, contentType: opts.ContentType}, nil
}

// MustNewFormatter is NewFormatter for formats known to be valid; it panics
// on error.
func MustNewFormatter(format string) *Formatter {
	f, err := NewFormatter(format)
	if err != nil {
		panic(err)
	}
	return f
}

// ParseError is a format string that cannot be compiled.
type ParseError struct {
	// Format is the whole format string.
	Format string
	// Pos is the byte offset of the operator's leading '%'.
	Pos int
	// Operator is the operator's name ("FOO" for %FOO(x):3%), "" when no
	// operator could be read at Pos.
	Operator string
	// Msg says what is wrong.
	Msg string
}

func (e *ParseError) Error() string {
	if e.Operator != "" {
		return fmt.Sprintf("accesslog: %%%s%% at position %d: %s", e.Operator, e.Pos, e.Msg)
	}
	return fmt.Sprintf("accesslog: position %d: %s", e.Pos, e.Msg)
}

// parseFormat splits format into literals and operators, Envoy's
// SubstitutionFormatParser::parse: "%%" is a literal '%', every other '%'
// must start %COMMAND(SUBCOMMAND):LENGTH% where COMMAND is [A-Z0-9_]+ and
// the subcommand cannot contain ')'. jsonLiterals pre-escapes literals for
// a JSON string.
func parseFormat(format string, jsonLiterals bool) ([]op, error) {
	var parts []op
	var lit []byte
	flush := func() {
		if len(lit) == 0 {
			return
		}
		s := string(lit)
		if jsonLiterals {
			s = string(appendJSONEscaped(nil, s))
		}
		parts = append(parts, op{code: opLiteral, lit: s})
		lit = lit[:0]
	}
	for pos := 0; pos < len(format); pos++ {
		c := format[pos]
		if c != '%' {
			lit = append(lit, c)
			continue
		}
		if pos+1 < len(format) && format[pos+1] == '%' {
			lit = append(lit, '%')
			pos++
			continue
		}
		flush()
		end, name, sub, hasSub, maxLen, ok := scanOperator(format, pos)
		if !ok {
			return nil, &ParseError{Format: format, Pos: pos, Operator: name,
				Msg: "not a valid command operator (want %COMMAND%, %COMMAND(ARG)% or %COMMAND(ARG):LENGTH%)"}
		}
		o, err := compileOperator(name, sub, hasSub, maxLen)
		if err != nil {
			return nil, &ParseError{Format: format, Pos: pos, Operator: name, Msg: err.Error()}
		}
		parts = append(parts, o)
		pos = end
	}
	flush()
	return parts, nil
}

// scanOperator reads the operator starting at format[pos] == '%'. end is the
// index of its closing '%'; maxLen is -1 when no length was given.
func scanOperator(format string, pos int) (end int, name, sub string, hasSub bool, maxLen int, ok bool) {
	maxLen = -1
	i := pos + 1
	for i < len(format) && isCommandByte(format[i]) {
		i++
	}
	name = format[pos+1 : i]
	if name == "" {
		return 0, "", "", false, 0, false
	}
	if i < len(format) && format[i] == '(' {
		j := strings.IndexByte(format[i+1:], ')')
		if j < 0 {
			return 0, name, "", false, 0, false
		}
		sub, hasSub = format[i+1:i+1+j], true
		i += j + 2
	}
	if i < len(format) && format[i] == ':' {
		j := i + 1
		for j < len(format) && format[j] >= '0' && format[j] <= '9' {
			j++
		}
		if j == i+1 {
			return 0, name, "", false, 0, false
		}
		n, err := strconv.Atoi(format[i+1 : j])
		if err != nil {
			return 0, name, "", false, 0, false
		}
		maxLen = n
		i = j
	}
	if i >= len(format) || format[i] != '%' {
		return 0, name, "", false, 0, false
	}
	return i, name, sub, hasSub, maxLen, true
}

func isCommandByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// syntax says what an operator accepts, Envoy's CommandSyntaxChecker.
type syntax uint8

const (
	commandOnly    syntax = 0
	paramsRequired syntax = 1 << iota
	paramsOptional
	lengthAllowed
)

type operatorDef struct {
	code   opcode
	syntax syntax
}

// operators maps Envoy's command names to herald's operators. Names missing
// here are rejected at config load ("not supported by herald yet").
var operators = map[string]operatorDef{
	"REQ":                                           {opRequestHeader, paramsRequired | lengthAllowed},
	"REQUEST_HEADER":                                {opRequestHeader, paramsRequired | lengthAllowed},
	"RESP":                                          {opResponseHeader, paramsRequired | lengthAllowed},
	"RESPONSE_HEADER":                               {opResponseHeader, paramsRequired | lengthAllowed},
	"TRAILER":                                       {opResponseTrailer, paramsRequired | lengthAllowed},
	"RESPONSE_TRAILER":                              {opResponseTrailer, paramsRequired | lengthAllowed},
	"START_TIME":                                    {opStartTime, paramsOptional},
	"RESPONSE_CODE":                                 {opResponseCode, commandOnly},
	"RESPONSE_CODE_DETAILS":                         {opResponseCodeDetails, commandOnly},
	"CONNECTION_TERMINATION_DETAILS":                {opConnectionTerminationDetails, commandOnly},
	"RESPONSE_FLAGS":                                {opResponseFlags, commandOnly},
	"RESPONSE_FLAGS_LONG":                           {opResponseFlagsLong, commandOnly},
	"BYTES_RECEIVED":                                {opBytesReceived, commandOnly},
	"BYTES_SENT":                                    {opBytesSent, commandOnly},
	"UPSTREAM_WIRE_BYTES_SENT":                      {opUpstreamWireBytesSent, commandOnly},
	"UPSTREAM_WIRE_BYTES_RECEIVED":                  {opUpstreamWireBytesReceived, commandOnly},
	"DURATION":                                      {opDuration, commandOnly},
	"REQUEST_DURATION":                              {opRequestDuration, commandOnly},
	"REQUEST_TX_DURATION":                           {opRequestTxDuration, commandOnly},
	"RESPONSE_DURATION":                             {opResponseDuration, commandOnly},
	"RESPONSE_TX_DURATION":                          {opResponseTxDuration, commandOnly},
	"PROTOCOL":                                      {opProtocol, commandOnly},
	"UPSTREAM_HOST":                                 {opUpstreamHost, commandOnly},
	"UPSTREAM_REMOTE_ADDRESS":                       {opUpstreamHost, commandOnly},
	"UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":          {opUpstreamHostWithoutPort, commandOnly},
	"UPSTREAM_REMOTE_PORT":                          {opUpstreamHostPort, commandOnly},
	"UPSTREAM_CLUSTER":                              {opUpstreamCluster, commandOnly},
	"UPSTREAM_LOCAL_ADDRESS":                        {opUpstreamLocalAddress, commandOnly},
	"UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":           {opUpstreamLocalAddressWithoutPort, commandOnly},
	"UPSTREAM_LOCAL_PORT":                           {opUpstreamLocalPort, commandOnly},
	"UPSTREAM_TRANSPORT_FAILURE_REASON":             {opUpstreamTransportFailureReason, commandOnly},
	"UPSTREAM_REQUEST_ATTEMPT_COUNT":                {opUpstreamRequestAttemptCount, commandOnly},
	"DOWNSTREAM_REMOTE_ADDRESS":                     {opDownstreamRemoteAddress, commandOnly},
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":        {opDownstreamRemoteAddressWithoutPort, commandOnly},
	"DOWNSTREAM_REMOTE_PORT":                        {opDownstreamRemotePort, commandOnly},
	"DOWNSTREAM_LOCAL_ADDRESS":                      {opDownstreamLocalAddress, commandOnly},
	"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":         {opDownstreamLocalAddressWithoutPort, commandOnly},
	"DOWNSTREAM_LOCAL_PORT":                         {opDownstreamLocalPort, commandOnly},
	"DOWNSTREAM_DIRECT_REMOTE_ADDRESS":              {opDownstreamDirectRemoteAddress, commandOnly},
	"DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT": {opDownstreamDirectRemoteAddressWithoutPort, commandOnly},
	"DOWNSTREAM_DIRECT_REMOTE_PORT":                 {opDownstreamDirectRemotePort, commandOnly},
	"ROUTE_NAME":                                    {opRouteName, commandOnly},
	"VIRTUAL_CLUSTER_NAME":                          {opVirtualClusterName, commandOnly},
	"REQUESTED_SERVER_NAME":                         {opRequestedServerName, commandOnly},
	"STREAM_ID":                                     {opStreamID, commandOnly},
	"CONNECTION_ID":                                 {opConnectionID, commandOnly},
	"HOSTNAME":                                      {opConstant, commandOnly},
	"ENVIRONMENT":                                   {opConstant, paramsRequired | lengthAllowed},
	"DYNAMIC_METADATA":                              {opDynamicMetadata, paramsRequired | lengthAllowed},
	"TLS_JA3_FINGERPRINT":                           {opTLSJA3Fingerprint, commandOnly},
}

// compileOperator checks the operator's syntax as Envoy's
// CommandSyntaxChecker does and builds it.
func compileOperator(name, sub string, hasSub bool, maxLen int) (op, error) {
	def, ok := operators[name]
	if !ok {
		return op{}, fmt.Errorf("command operator not supported by herald yet")
	}
	switch {
	case def.syntax == commandOnly && (hasSub || maxLen >= 0):
		return op{}, fmt.Errorf("%s does not take any parameters or length", name)
	case def.syntax&paramsRequired != 0 && sub == "":
		return op{}, fmt.Errorf("%s requires parameters", name)
	case def.syntax&lengthAllowed == 0 && maxLen >= 0:
		return op{}, fmt.Errorf("%s does not allow length to be specified", name)
	}
	o := op{code: def.code, maxLen: maxLen}
	switch def.code {
	case opRequestHeader, opResponseHeader, opResponseTrailer:
		main, alt, err := parseHeaderNames(sub)
		if err != nil {
			return op{}, err
		}
		o.header, o.altHeader = main, alt
	case opDynamicMetadata:
		o.metadata = parseMetadataPath(sub)
	case opStartTime:
		if sub != "" {
			tf, err := compileTimeFormat(sub)
			if err != nil {
				return op{}, err
			}
			o.time = tf
		}
	case opConstant:
		var v string
		var set bool
		if name == "HOSTNAME" {
			// Envoy reads gethostname once, when the formatter is built.
			h, err := os.Hostname()
			v, set = h, err == nil
		} else {
			// Envoy reads the environment once, when the formatter is built.
			v, set = os.LookupEnv(sub)
		}
		if set && maxLen >= 0 && len(v) > maxLen {
			v = v[:maxLen]
		}
		o.lit, o.constSet = v, set
	}
	return o, nil
}

// parseHeaderNames splits "X?Y" into lowercase header names; Envoy allows one
// alternative and rejects names with NUL, CR or LF.
func parseHeaderNames(sub string) (main, alt string, err error) {
	main, alt, _ = strings.Cut(sub, "?")
	if strings.Contains(alt, "?") {
		return "", "", fmt.Errorf("more than 1 alternative header specified in %q", sub)
	}
	if strings.ContainsAny(sub, "\x00\r\n") {
		return "", "", fmt.Errorf("invalid header configuration: format string contains null or newline")
	}
	return strings.ToLower(main), strings.ToLower(alt), nil
}
