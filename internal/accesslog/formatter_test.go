package accesslog

import (
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

var testStart = time.Date(2016, 4, 15, 20, 17, 0, 310_123_456, time.UTC)

func headers(kv ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// typicalInfo is a finished HTTP/1.1 request proxied to one upstream host.
func typicalInfo() *streaminfo.Info {
	return &streaminfo.Info{
		StartTime:               testStart,
		EndTime:                 testStart.Add(226 * time.Millisecond),
		LastDownstreamRxByte:    testStart.Add(3 * time.Millisecond),
		LastUpstreamTxByte:      testStart.Add(4*time.Millisecond + 900*time.Microsecond),
		FirstUpstreamRxByte:     testStart.Add(120 * time.Millisecond),
		LastDownstreamTxByte:    testStart.Add(225 * time.Millisecond),
		Protocol:                "HTTP/1.1",
		DownstreamRemoteAddress: netip.MustParseAddrPort("10.0.35.28:51234"),
		DownstreamLocalAddress:  netip.MustParseAddrPort("[2001:db8::1]:8080"),
		DirectRemoteAddress:     netip.MustParseAddrPort("127.0.0.1:40000"),
		RequestHeaders: headers(
			":method", "POST", ":path", "/api/v1/locations", ":authority", "locations", ":scheme", "http",
			"x-forwarded-for", "10.0.35.28", "user-agent", "nsq2http",
			"x-request-id", "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2", "x-empty", ""),
		ResponseHeaders:                headers(":status", "204", "x-envoy-upstream-service-time", "100"),
		ResponseTrailers:               headers("grpc-status", "0"),
		ResponseCode:                   204,
		ResponseCodeDetails:            "via_upstream",
		Flags:                          0,
		BytesReceived:                  154,
		BytesSent:                      0,
		UpstreamBytesSent:              420,
		UpstreamBytesReceived:          99,
		UpstreamCluster:                "locations",
		UpstreamHost:                   "10.0.2.1:80",
		UpstreamLocalAddress:           "10.0.2.9:33000",
		RouteName:                      "r1",
		VirtualClusterName:             "vc",
		RequestID:                      "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2",
		RequestedServerName:            "locations.example.com",
		UpstreamRequestAttemptCount:    2,
		ConnectionID:                   17,
		UpstreamTransportFailureReason: "",
	}
}

func TestDefaultFormatGolden(t *testing.T) {
	f, err := NewFormatter(DefaultFormat)
	if err != nil {
		t.Fatal(err)
	}
	// The example line of Envoy's docs, with the upstream host printed as
	// Envoy 1.x does today (ip:port).
	want := `[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/1.1" 204 - 154 0 226 100 "10.0.35.28" "nsq2http" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "locations" "10.0.2.1:80"` + "\n"
	if got := string(f.Format(nil, typicalInfo())); got != want {
		t.Errorf("default format:\n got %q\nwant %q", got, want)
	}

	// A TCP record: no headers, no protocol, no response.
	tcp := &streaminfo.Info{StartTime: testStart, EndTime: testStart.Add(time.Second), BytesReceived: 5, BytesSent: 7}
	want = `[2016-04-15T20:17:00.310Z] "- - -" 0 - 5 7 1000 - "-" "-" "-" "-" "-"` + "\n"
	if got := string(f.Format(nil, tcp)); got != want {
		t.Errorf("default format, TCP:\n got %q\nwant %q", got, want)
	}
}

func TestFormatOperators(t *testing.T) {
	host, _ := os.Hostname()
	t.Setenv("HERALD_TEST_ENV", "environment-value")
	tests := []struct {
		name   string
		format string
		modify func(*streaminfo.Info)
		want   string
	}{
		{name: "literal and escaped percent", format: "100%% done", want: "100% done"},
		{name: "empty format", format: "", want: ""},
		{name: "start time default", format: "%START_TIME%", want: "2016-04-15T20:17:00.310Z"},
		{name: "start time strftime", format: "%START_TIME(%Y/%m/%dT%H:%M:%S%z %s)%", want: "2016/04/15T20:17:00+0000 1460751420"},
		{name: "start time millis", format: "%START_TIME(%s.%3f)%", want: "1460751420.310"},
		{name: "start time micros", format: "%START_TIME(%s.%6f)%", want: "1460751420.310123"},
		{name: "start time nanos", format: "%START_TIME(%s.%9f)%", want: "1460751420.310123456"},
		{name: "start time bare f is nanos", format: "%START_TIME(%f)%", want: "310123456"},
		{name: "start time names", format: "%START_TIME(%a %A %b %B %j %e %p %Z %%)%", want: "Fri Friday Apr April 106 15 PM UTC %"},
		{name: "start time absl seconds", format: "%START_TIME(%E3S|%E*S|%Ez)%", want: "00.310|00.310123456|+00:00"},
		{name: "start time unset", format: "%START_TIME%", modify: func(i *streaminfo.Info) { i.StartTime = time.Time{} }, want: "-"},
		{name: "request header", format: "%REQ(:METHOD)% %REQ(USER-AGENT)%", want: "POST nsq2http"},
		{name: "request header alias", format: "%REQUEST_HEADER(:path)%", want: "/api/v1/locations"},
		{name: "request header falls back", format: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", want: "/api/v1/locations"},
		{name: "request header prefers main", format: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
			modify: func(i *streaminfo.Info) { i.RequestHeaders.Add("x-envoy-original-path", "/orig") }, want: "/orig"},
		{name: "request header truncated", format: "%REQ(USER-AGENT):3%", want: "nsq"},
		{name: "request header missing", format: "%REQ(X-MISSING)%", want: "-"},
		// A present, empty header is an empty value, not unset.
		{name: "request header empty", format: "[%REQ(X-EMPTY)%]", want: "[]"},
		{name: "request headers nil", format: "%REQ(:METHOD)%", modify: func(i *streaminfo.Info) { i.RequestHeaders = nil }, want: "-"},
		{name: "response header", format: "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", want: "100"},
		{name: "response header alias", format: "%RESPONSE_HEADER(:status)%", want: "204"},
		{name: "trailer", format: "%TRAILER(GRPC-STATUS)%", want: "0"},
		{name: "trailer missing", format: "%TRAILER(X)%", want: "-"},
		{name: "response code", format: "%RESPONSE_CODE%", want: "204"},
		{name: "response code none", format: "%RESPONSE_CODE%", modify: func(i *streaminfo.Info) { i.ResponseCode = 0 }, want: "0"},
		{name: "response code details", format: "%RESPONSE_CODE_DETAILS%", want: "via_upstream"},
		{name: "connection termination details unset", format: "%CONNECTION_TERMINATION_DETAILS%", want: "-"},
		{name: "connection termination details", format: "%CONNECTION_TERMINATION_DETAILS%",
			modify: func(i *streaminfo.Info) { i.ConnectionTerminationDetails = "idle" }, want: "idle"},
		{name: "response flags none", format: "%RESPONSE_FLAGS%", want: "-"},
		{name: "response flags", format: "%RESPONSE_FLAGS%",
			modify: func(i *streaminfo.Info) {
				i.Flags = streaminfo.NoHealthyUpstream | streaminfo.UpstreamRetryLimitExceeded
			},
			want: "UH,URX"},
		{name: "response flags long", format: "%RESPONSE_FLAGS_LONG%",
			modify: func(i *streaminfo.Info) { i.Flags = streaminfo.NoRouteFound | streaminfo.OverloadManager },
			want:   "NoRouteFound,OverloadManagerTerminated"},
		{name: "bytes", format: "%BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_WIRE_BYTES_SENT% %UPSTREAM_WIRE_BYTES_RECEIVED%", want: "154 0 420 99"},
		{name: "durations", format: "%DURATION% %REQUEST_DURATION% %REQUEST_TX_DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION%",
			want: "226 3 4 120 105"},
		{name: "durations unset", format: "%DURATION% %REQUEST_DURATION% %RESPONSE_DURATION% %RESPONSE_TX_DURATION%",
			modify: func(i *streaminfo.Info) {
				i.EndTime, i.LastDownstreamRxByte, i.FirstUpstreamRxByte = time.Time{}, time.Time{}, time.Time{}
			},
			want: "- - - -"},
		{name: "protocol", format: "%PROTOCOL%", want: "HTTP/1.1"},
		{name: "protocol tcp", format: "%PROTOCOL%", modify: func(i *streaminfo.Info) { i.Protocol = "" }, want: "-"},
		{name: "upstream host", format: "%UPSTREAM_HOST% %UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %UPSTREAM_REMOTE_PORT%", want: "10.0.2.1:80 10.0.2.1 80"},
		{name: "upstream host ipv6", format: "%UPSTREAM_HOST% %UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
			modify: func(i *streaminfo.Info) { i.UpstreamHost = "[::1]:8443" }, want: "[::1]:8443 ::1"},
		{name: "upstream host unset", format: "%UPSTREAM_HOST%", modify: func(i *streaminfo.Info) { i.UpstreamHost = "" }, want: "-"},
		{name: "upstream cluster", format: "%UPSTREAM_CLUSTER%", want: "locations"},
		{name: "upstream local address", format: "%UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %UPSTREAM_LOCAL_PORT%",
			want: "10.0.2.9:33000 10.0.2.9 33000"},
		{name: "upstream transport failure reason", format: "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
			modify: func(i *streaminfo.Info) {
				i.UpstreamTransportFailureReason = "TLS error: 268435581 CERTIFICATE_VERIFY_FAILED"
			},
			want: "TLS_error:_268435581_CERTIFICATE_VERIFY_FAILED"},
		{name: "upstream transport failure reason unset", format: "%UPSTREAM_TRANSPORT_FAILURE_REASON%", want: "-"},
		{name: "upstream request attempt count", format: "%UPSTREAM_REQUEST_ATTEMPT_COUNT%", want: "2"},
		{name: "downstream remote", format: "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_REMOTE_PORT%",
			want: "10.0.35.28:51234 10.0.35.28 51234"},
		{name: "downstream local ipv6", format: "%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_PORT%",
			want: "[2001:db8::1]:8080 2001:db8::1 8080"},
		{name: "downstream direct remote", format: "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_DIRECT_REMOTE_PORT%",
			want: "127.0.0.1:40000 127.0.0.1 40000"},
		{name: "downstream address unset", format: "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
			modify: func(i *streaminfo.Info) { i.DownstreamRemoteAddress = netip.AddrPort{} }, want: "- -"},
		{name: "route and names", format: "%ROUTE_NAME% %VIRTUAL_CLUSTER_NAME% %REQUESTED_SERVER_NAME% %STREAM_ID% %CONNECTION_ID%",
			want: "r1 vc locations.example.com cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2 17"},
		{name: "route name unset", format: "%ROUTE_NAME%", modify: func(i *streaminfo.Info) { i.RouteName = "" }, want: "-"},
		{name: "JA3 fingerprint", format: "%TLS_JA3_FINGERPRINT%",
			modify: func(i *streaminfo.Info) { i.JA3Hash = "e7d705a3286e19ea42f587b344ee6865" }, want: "e7d705a3286e19ea42f587b344ee6865"},
		{name: "JA3 fingerprint unset", format: "%TLS_JA3_FINGERPRINT%", want: "-"},
		{name: "hostname", format: "%HOSTNAME%", want: host},
		{name: "environment", format: "%ENVIRONMENT(HERALD_TEST_ENV):11%", want: "environment"},
		{name: "environment unset", format: "%ENVIRONMENT(HERALD_TEST_NO_SUCH_VAR)%", want: "-"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFormatter(tc.format)
			if err != nil {
				t.Fatalf("NewFormatter(%q): %v", tc.format, err)
			}
			info := typicalInfo()
			if tc.modify != nil {
				tc.modify(info)
			}
			if got := string(f.Format([]byte("prefix:"), info)); got != "prefix:"+tc.want {
				t.Errorf("Format(%q) = %q, want %q", tc.format, got, "prefix:"+tc.want)
			}
		})
	}
}

func TestOmitEmptyValuesText(t *testing.T) {
	f, err := NewFormatterWithOptions("[%REQ(X-MISSING)%][%UPSTREAM_HOST%][%RESPONSE_FLAGS%]", TextOptions{OmitEmptyValues: true})
	if err != nil {
		t.Fatal(err)
	}
	info := typicalInfo()
	info.UpstreamHost = ""
	// RESPONSE_FLAGS always has a value ("-" when none is set).
	if got, want := string(f.Format(nil, info)), "[][][-]"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestFormatErrors(t *testing.T) {
	tests := []struct {
		name     string
		format   string
		wantOp   string
		wantPos  int
		wantText string
	}{
		{name: "unknown operator", format: "abc %NO_SUCH_THING% def", wantOp: "NO_SUCH_THING", wantPos: 4, wantText: "not supported by herald yet"},
		{name: "filter state not supported yet", format: "%FILTER_STATE(key)%", wantOp: "FILTER_STATE", wantText: "not supported by herald yet"},
		{name: "unterminated", format: "%PROTOCOL", wantOp: "PROTOCOL", wantText: "not a valid command operator"},
		{name: "lone percent", format: "50% off", wantPos: 2, wantText: "not a valid command operator"},
		{name: "lowercase command", format: "%protocol%", wantText: "not a valid command operator"},
		{name: "missing closing paren", format: "%REQ(:PATH%", wantOp: "REQ", wantText: "not a valid command operator"},
		{name: "parameters on a plain operator", format: "%PROTOCOL(X)%", wantOp: "PROTOCOL", wantText: "does not take any parameters or length"},
		{name: "length on a plain operator", format: "%PROTOCOL:10%", wantOp: "PROTOCOL", wantText: "does not take any parameters or length"},
		{name: "header without parameters", format: "%REQ%", wantOp: "REQ", wantText: "requires parameters"},
		{name: "two alternatives", format: "%REQ(A?B?C)%", wantOp: "REQ", wantText: "more than 1 alternative header"},
		{name: "length on start time", format: "%START_TIME:10%", wantOp: "START_TIME", wantText: "does not allow length"},
		{name: "newline in start time", format: "%START_TIME(%Y%n)%", wantOp: "START_TIME", wantText: "newline"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewFormatter(tc.format)
			if err == nil {
				t.Fatalf("NewFormatter(%q) succeeded, want error", tc.format)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if pe.Operator != tc.wantOp || pe.Pos != tc.wantPos {
				t.Errorf("got operator %q at %d, want %q at %d", pe.Operator, pe.Pos, tc.wantOp, tc.wantPos)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
		})
	}
}

func TestHostWithoutPort(t *testing.T) {
	tests := []struct {
		in, host, port string
	}{
		{in: "10.0.0.1:80", host: "10.0.0.1", port: "80"},
		{in: "[::1]:80", host: "::1", port: "80"},
		{in: "::1", host: "::1", port: ""},
		{in: "example.com", host: "example.com", port: ""},
		{in: "", host: "", port: ""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := hostWithoutPort(tc.in); got != tc.host {
				t.Errorf("hostWithoutPort(%q) = %q, want %q", tc.in, got, tc.host)
			}
			if got := portOf(tc.in); got != tc.port {
				t.Errorf("portOf(%q) = %q, want %q", tc.in, got, tc.port)
			}
		})
	}
}

func BenchmarkFormatDefault(b *testing.B) {
	f := MustNewFormatter(DefaultFormat)
	info := typicalInfo()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = f.Format(buf[:0], info)
	}
}

func TestFormatDefaultDoesNotAllocate(t *testing.T) {
	f := MustNewFormatter(DefaultFormat)
	info := typicalInfo()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = f.Format(buf[:0], info) }); n != 0 {
		t.Errorf("Format(default) allocates %v times per line, want 0", n)
	}
}
