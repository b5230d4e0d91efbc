package accesslog

import (
	"strconv"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-proxy/herald/internal/streaminfo"
)

func parseFilter(t *testing.T, js string) *accesslogv3.AccessLogFilter {
	t.Helper()
	f := &accesslogv3.AccessLogFilter{}
	if err := protojson.Unmarshal([]byte(js), f); err != nil {
		t.Fatalf("parse %s: %v", js, err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("validate %s: %v", js, err)
	}
	return f
}

func TestFilters(t *testing.T) {
	cmp := func(kind, op string, v int) string {
		return `{"` + kind + `":{"comparison":{"op":"` + op + `","value":{"default_value":` + strconv.Itoa(v) + `,"runtime_key":"k"}}}}`
	}
	tests := []struct {
		name   string
		filter string
		modify func(*streaminfo.Info)
		want   bool
	}{
		{name: "status GE matches", filter: cmp("status_code_filter", "GE", 200), want: true},
		{name: "status GE misses", filter: cmp("status_code_filter", "GE", 500), want: false},
		{name: "status EQ", filter: cmp("status_code_filter", "EQ", 204), want: true},
		{name: "status NE", filter: cmp("status_code_filter", "NE", 204), want: false},
		{name: "status LE", filter: cmp("status_code_filter", "LE", 204), want: true},
		// No response compares as 0.
		{name: "status without response", filter: cmp("status_code_filter", "EQ", 0),
			modify: func(i *streaminfo.Info) { i.ResponseCode = 0 }, want: true},
		{name: "duration GE matches", filter: cmp("duration_filter", "GE", 226), want: true},
		{name: "duration GE misses", filter: cmp("duration_filter", "GE", 227), want: false},
		{name: "duration never started", filter: cmp("duration_filter", "GE", 0),
			modify: func(i *streaminfo.Info) { i.StartTime = time.Time{} }, want: false},
		{name: "not health check", filter: `{"not_health_check_filter":{}}`, want: true},
		{name: "health check excluded", filter: `{"not_health_check_filter":{}}`,
			modify: func(i *streaminfo.Info) { i.HealthCheck = true }, want: false},
		{name: "and all true", filter: `{"and_filter":{"filters":[` + cmp("status_code_filter", "GE", 200) + `,{"not_health_check_filter":{}}]}}`, want: true},
		{name: "and one false", filter: `{"and_filter":{"filters":[` + cmp("status_code_filter", "GE", 500) + `,{"not_health_check_filter":{}}]}}`, want: false},
		{name: "or one true", filter: `{"or_filter":{"filters":[` + cmp("status_code_filter", "GE", 500) + `,` + cmp("duration_filter", "GE", 100) + `]}}`, want: true},
		{name: "or all false", filter: `{"or_filter":{"filters":[` + cmp("status_code_filter", "GE", 500) + `,` + cmp("duration_filter", "GE", 1000) + `]}}`, want: false},
		{name: "any response flag, none set", filter: `{"response_flag_filter":{}}`, want: false},
		{name: "any response flag", filter: `{"response_flag_filter":{}}`,
			modify: func(i *streaminfo.Info) { i.SetFlag(streaminfo.StreamIdleTimeout) }, want: true},
		{name: "listed response flag", filter: `{"response_flag_filter":{"flags":["UH","UF"]}}`,
			modify: func(i *streaminfo.Info) { i.SetFlag(streaminfo.UpstreamConnectionFailure) }, want: true},
		{name: "unlisted response flag", filter: `{"response_flag_filter":{"flags":["UH","UF"]}}`,
			modify: func(i *streaminfo.Info) { i.SetFlag(streaminfo.NoRouteFound) }, want: false},
		{name: "header present", filter: `{"header_filter":{"header":{"name":"User-Agent","present_match":true}}}`, want: true},
		{name: "header absent", filter: `{"header_filter":{"header":{"name":"x-missing","present_match":true}}}`, want: false},
		{name: "header absent inverted", filter: `{"header_filter":{"header":{"name":"x-missing","present_match":true,"invert_match":true}}}`, want: true},
		{name: "header exact", filter: `{"header_filter":{"header":{"name":":method","string_match":{"exact":"POST"}}}}`, want: true},
		{name: "header exact ignore case", filter: `{"header_filter":{"header":{"name":":method","string_match":{"exact":"post","ignore_case":true}}}}`, want: true},
		{name: "header prefix", filter: `{"header_filter":{"header":{"name":":path","string_match":{"prefix":"/api/"}}}}`, want: true},
		{name: "header suffix miss", filter: `{"header_filter":{"header":{"name":":path","string_match":{"suffix":".json"}}}}`, want: false},
		{name: "header regex is a full match", filter: `{"header_filter":{"header":{"name":":path","string_match":{"safe_regex":{"regex":"/api"}}}}}`, want: false},
		{name: "header regex", filter: `{"header_filter":{"header":{"name":":path","safe_regex_match":{"regex":"/api/v[0-9]+/.*"}}}}`, want: true},
		{name: "header range", filter: `{"header_filter":{"header":{"name":"x-n","range_match":{"start":0,"end":10}}}}`,
			modify: func(i *streaminfo.Info) { i.RequestHeaders.Add("x-n", "9") }, want: true},
		// A missing header never matches, even inverted, unless it counts as empty.
		{name: "missing header inverted", filter: `{"header_filter":{"header":{"name":"x-n","range_match":{"start":0,"end":10},"invert_match":true}}}`, want: false},
		{name: "missing header as empty inverted", filter: `{"header_filter":{"header":{"name":"x-n","range_match":{"start":0,"end":10},"invert_match":true,"treat_missing_header_as_empty":true}}}`, want: true},
		{name: "repeated header joined", filter: `{"header_filter":{"header":{"name":"x-r","string_match":{"exact":"a,b"}}}}`,
			modify: func(i *streaminfo.Info) { i.RequestHeaders.Add("x-r", "a"); i.RequestHeaders.Add("x-r", "b") }, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := BuildFilter(parseFilter(t, tc.filter), "filter")
			if err != nil {
				t.Fatalf("BuildFilter: %v", err)
			}
			info := typicalInfo()
			if tc.modify != nil {
				tc.modify(info)
			}
			if got := f.Match(info); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFilterErrors(t *testing.T) {
	tests := []struct {
		name    string
		filter  string
		wantErr string
	}{
		{name: "runtime filter", filter: `{"runtime_filter":{"runtime_key":"k"}}`, wantErr: "filter.runtime_filter: access log filter runtime_filter is not supported by herald yet"},
		{name: "traceable filter", filter: `{"traceable_filter":{}}`, wantErr: "filter.traceable_filter: access log filter traceable_filter is not supported"},
		{name: "grpc status nested", filter: `{"or_filter":{"filters":[{"not_health_check_filter":{}},{"grpc_status_filter":{}}]}}`,
			wantErr: "filter.or_filter.filters[1].grpc_status_filter: access log filter grpc_status_filter is not supported"},
		{name: "bad regex", filter: `{"header_filter":{"header":{"name":"a","safe_regex_match":{"regex":"("}}}}`,
			wantErr: "filter.header_filter.header.safe_regex_match.regex"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildFilter(parseFilter(t, tc.filter), "filter")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("BuildFilter error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
