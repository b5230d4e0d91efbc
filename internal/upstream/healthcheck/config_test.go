package healthcheck

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

func parseHC(t *testing.T, y string) *corev3.HealthCheck {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("bad test yaml: %v", err)
	}
	hc := &corev3.HealthCheck{}
	if err := protojson.Unmarshal(js, hc); err != nil {
		t.Fatalf("bad test health check: %v", err)
	}
	return hc
}

const base = "{timeout: 1s, interval: 5s, unhealthy_threshold: 3, healthy_threshold: 2, "

func TestBuild(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(c *Config) // fills the expected config from defaults
	}{
		{
			// Envoy's defaults: reuse true, 60 s no-traffic interval, the
			// unhealthy/edge intervals follow interval, 200 only, GET,
			// host = cluster name, 1024-byte response buffer.
			name: "http defaults",
			yaml: base + "http_health_check: {path: /healthz}}",
			want: func(c *Config) {
				c.HTTP = &HTTPConfig{Host: "backend", Path: "/healthz", Method: "GET", ResponseBufferSize: 1024, Expected: []StatusRange{{200, 201}}}
			},
		},
		{
			name: "http everything",
			yaml: base + `initial_jitter: 0.1s, interval_jitter: 0.2s, interval_jitter_percent: 10, reuse_connection: false,
				no_traffic_interval: 30s, no_traffic_healthy_interval: 40s, unhealthy_interval: 7s, unhealthy_edge_interval: 8s, healthy_edge_interval: 9s,
				always_log_health_check_failures: true,
				http_health_check: {host: svc.local, path: /hc, method: POST, send: {text: "7069"}, receive: [{text: "6f6b"}], response_buffer_size: 0,
				codec_client_type: HTTP2, expected_statuses: [{start: 200, end: 300}], retriable_statuses: [{start: 429, end: 430}],
				request_headers_to_add: [{header: {key: X-Hc, value: "1"}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}], request_headers_to_remove: [x-drop]}}`,
			want: func(c *Config) {
				c.InitialJitter, c.IntervalJitter, c.IntervalJitterPercent = 100*time.Millisecond, 200*time.Millisecond, 10
				c.ReuseConnection = false
				c.NoTrafficInterval, c.NoTrafficHealthyInterval = 30*time.Second, 40*time.Second
				c.UnhealthyInterval, c.UnhealthyEdgeInterval, c.HealthyEdgeInterval = 7*time.Second, 8*time.Second, 9*time.Second
				c.AlwaysLogFailures = true
				c.HTTP = &HTTPConfig{Host: "svc.local", Path: "/hc", Method: "POST", HTTP2: true, Send: []byte("pi"), Receive: [][]byte{[]byte("ok")},
					Expected: []StatusRange{{200, 300}}, Retriable: []StatusRange{{429, 430}},
					Headers: HeaderMutations{Remove: []string{"x-drop"}, Add: []HeaderToAdd{{Name: "x-hc", Value: "1", Action: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}}}}
			},
		},
		{
			// unhealthy_edge_interval defaults to unhealthy_interval, not interval.
			name: "edge interval defaults",
			yaml: base + "unhealthy_interval: 2s, tcp_health_check: {}}",
			want: func(c *Config) {
				c.Kind = TCP
				c.UnhealthyInterval, c.UnhealthyEdgeInterval = 2*time.Second, 2*time.Second
				c.TCP = &TCPConfig{}
			},
		},
		{
			name: "tcp payloads",
			yaml: base + `tcp_health_check: {send: {text: "50494e47"}, receive: [{text: "50"}, {binary: "T05H"}]}}`,
			want: func(c *Config) {
				c.Kind = TCP
				c.TCP = &TCPConfig{Send: []byte("PING"), Receive: [][]byte{[]byte("P"), []byte("ONG")}}
			},
		},
		{
			name: "grpc defaults authority to the cluster",
			yaml: base + "grpc_health_check: {service_name: svc}}",
			want: func(c *Config) {
				c.Kind = GRPC
				c.GRPC = &GRPCConfig{ServiceName: "svc", Authority: "backend"}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, errs := Build(parseHC(t, tc.yaml), "static_resources.clusters[0].health_checks[0]", "backend")
			if len(errs) > 0 {
				t.Fatalf("Build: %v", errs)
			}
			want := &Config{Timeout: time.Second, Interval: 5 * time.Second, UnhealthyThreshold: 3, HealthyThreshold: 2,
				ReuseConnection: true, NoTrafficInterval: time.Minute, NoTrafficHealthyInterval: time.Minute,
				UnhealthyInterval: 5 * time.Second, UnhealthyEdgeInterval: 5 * time.Second, HealthyEdgeInterval: 5 * time.Second}
			tc.want(want)
			if want.NoTrafficHealthyInterval == time.Minute {
				want.NoTrafficHealthyInterval = want.NoTrafficInterval
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	const p = "c.health_checks[0]"
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "event_log_path", yaml: base + "event_log_path: /tmp/x, tcp_health_check: {}}", wantErr: p + ".event_log_path: not supported by herald yet"},
		{name: "alt_port", yaml: base + "alt_port: 81, tcp_health_check: {}}", wantErr: p + ".alt_port: not supported by herald yet"},
		{name: "custom checker", yaml: base + "custom_health_check: {name: envoy.health_checkers.redis}}", wantErr: p + ".custom_health_check: not supported by herald yet"},
		{name: "http3", yaml: base + "http_health_check: {path: /, codec_client_type: HTTP3}}", wantErr: p + ".http_health_check.codec_client_type: HTTP3 health checks are not supported"},
		{name: "service_name_matcher", yaml: base + "http_health_check: {path: /, service_name_matcher: {exact: x}}}", wantErr: p + ".http_health_check.service_name_matcher: not supported"},
		{name: "proxy protocol", yaml: base + "tcp_health_check: {proxy_protocol_config: {}}}", wantErr: p + ".tcp_health_check.proxy_protocol_config: not supported"},
		{name: "bad hex", yaml: base + `tcp_health_check: {send: {text: "zz"}}}`, wantErr: p + `.tcp_health_check.send.text: invalid hex string "zz"`},
		{name: "missing path", yaml: base + "http_health_check: {}}", wantErr: p + ".http_health_check.path: path is required"},
		{name: "body on GET", yaml: base + `http_health_check: {path: /, send: {text: "00"}}}`, wantErr: "cannot specify a request payload with method 'GET'"},
		{name: "bad range", yaml: base + "http_health_check: {path: /, expected_statuses: [{start: 300, end: 200}]}}", wantErr: p + ".http_health_check.expected_statuses[0]: invalid http expected status range: expecting start < end"},
		{name: "range below 100", yaml: base + "http_health_check: {path: /, retriable_statuses: [{start: 99, end: 200}]}}", wantErr: "expecting start >= 100"},
		{name: "receive over buffer", yaml: base + `http_health_check: {path: /, response_buffer_size: 1, receive: [{text: "0000"}]}}`, wantErr: "over than http health response buffer size '1'"},
		{name: "header operator", yaml: base + `http_health_check: {path: /, request_headers_to_add: [{header: {key: x, value: "%UPSTREAM_REMOTE_ADDRESS%"}}]}}`, wantErr: "command operators in health check headers are not supported"},
		{name: "missing thresholds", yaml: "{timeout: 1s, interval: 1s, tcp_health_check: {}}", wantErr: p + ".unhealthy_threshold: unhealthy_threshold is required"},
		{name: "no checker", yaml: "{timeout: 1s, interval: 1s, unhealthy_threshold: 1, healthy_threshold: 1}", wantErr: "one of http_health_check, tcp_health_check or grpc_health_check is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Build(parseHC(t, tc.yaml), p, "c")
			if len(errs) == 0 || !strings.Contains(errs.Error(), tc.wantErr) {
				t.Errorf("errors = %v, want one containing %q", errs, tc.wantErr)
			}
		})
	}
}
