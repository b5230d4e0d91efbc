package stats

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// Real Envoy stat names, one or more per default tag of well_known_names.cc.
func TestDefaultTagExtraction(t *testing.T) {
	tests := []struct {
		name     string
		stat     string
		wantName string
		wantTags []Tag
	}{
		{name: "cluster_name", stat: "cluster.backend_service.upstream_rq_total",
			wantName: "cluster.upstream_rq_total", wantTags: []Tag{{TagClusterName, "backend_service"}}},
		{name: "cluster_name_response_code", stat: "cluster.backend_service.upstream_rq_200",
			wantName: "cluster.upstream_rq", wantTags: []Tag{{TagResponseCode, "200"}, {TagClusterName, "backend_service"}}},
		{name: "cluster_name_response_code_class", stat: "cluster.backend_service.upstream_rq_5xx",
			wantName: "cluster.upstream_rq_xx", wantTags: []Tag{{TagResponseCodeClass, "5"}, {TagClusterName, "backend_service"}}},
		{name: "http_conn_manager_prefix_response_code_class", stat: "http.ingress_http.downstream_rq_2xx",
			wantName: "http.downstream_rq_xx", wantTags: []Tag{{TagResponseCodeClass, "2"}, {TagHTTPConnManagerPrefix, "ingress_http"}}},
		{name: "http_conn_manager_prefix", stat: "http.ingress_http.downstream_cx_total",
			wantName: "http.downstream_cx_total", wantTags: []Tag{{TagHTTPConnManagerPrefix, "ingress_http"}}},
		{name: "listener_address_ipv4", stat: "listener.127.0.0.1_10000.downstream_cx_total",
			wantName: "listener.downstream_cx_total", wantTags: []Tag{{TagListenerAddress, "127.0.0.1_10000"}}},
		{name: "listener_address_ipv6", stat: "listener.[__1]_10000.downstream_cx_total",
			wantName: "listener.downstream_cx_total", wantTags: []Tag{{TagListenerAddress, "[__1]_10000"}}},
		{name: "listener_stat_prefix", stat: "listener.my_listener.downstream_cx_active",
			wantName: "listener.downstream_cx_active", wantTags: []Tag{{TagListenerAddress, "my_listener"}}},
		// LISTENER_ADDRESS's negative match: the admin listener keeps its name.
		{name: "listener_admin_not_tagged", stat: "listener.admin.downstream_cx_total",
			wantName: "listener.admin.downstream_cx_total"},
		{name: "listener_http_prefix", stat: "listener.127.0.0.1_10000.http.ingress_http.downstream_rq_2xx",
			wantName: "listener.http.downstream_rq_xx",
			wantTags: []Tag{{TagResponseCodeClass, "2"}, {TagHTTPConnManagerPrefix, "ingress_http"}, {TagListenerAddress, "127.0.0.1_10000"}}},
		{name: "listener_worker_id", stat: "listener.127.0.0.1_10000.worker_1.downstream_cx_active",
			wantName: "listener.worker_downstream_cx_active",
			wantTags: []Tag{{TagWorkerID, "1"}, {TagListenerAddress, "127.0.0.1_10000"}}},
		{name: "listener_manager_worker_id", stat: "listener_manager.worker_0.dispatcher.loop_duration_us",
			wantName: "listener_manager.worker_dispatcher.loop_duration_us", wantTags: []Tag{{TagWorkerID, "0"}}},
		{name: "server_worker_id", stat: "server.worker_3.watchdog_miss",
			wantName: "server.worker_watchdog_miss", wantTags: []Tag{{TagWorkerID, "3"}}},
		{name: "tcp_prefix", stat: "tcp.ingress_tcp.downstream_cx_total",
			wantName: "tcp.downstream_cx_total", wantTags: []Tag{{TagTCPPrefix, "ingress_tcp"}}},
		{name: "udp_prefix", stat: "udp.dns_udp.downstream_sess_total",
			wantName: "udp.downstream_sess_total", wantTags: []Tag{{TagUDPPrefix, "dns_udp"}}},
		{name: "virtual_host_virtual_cluster", stat: "vhost.vh1.vcluster.other.upstream_rq_503",
			wantName: "vhost.vcluster.upstream_rq",
			wantTags: []Tag{{TagResponseCode, "503"}, {TagVirtualCluster, "other"}, {TagVirtualHost, "vh1"}}},
		{name: "route", stat: "vhost.vh1.route.r1.upstream_rq_total",
			wantName: "vhost.route.upstream_rq_total", wantTags: []Tag{{TagVirtualHost, "vh1"}, {TagRoute, "r1"}}},
		{name: "grpc_bridge", stat: "cluster.grpc_cluster.grpc.helloworld.SayHello.success",
			wantName: "cluster.grpc.success",
			wantTags: []Tag{{TagGRPCBridgeMethod, "SayHello"}, {TagGRPCBridgeService, "helloworld"}, {TagClusterName, "grpc_cluster"}}},
		{name: "user_agent", stat: "http.ingress_http.user_agent.ios.downstream_cx_total",
			wantName: "http.user_agent.downstream_cx_total",
			wantTags: []Tag{{TagHTTPUserAgent, "ios"}, {TagHTTPConnManagerPrefix, "ingress_http"}}},
		{name: "fault_downstream_cluster", stat: "http.ingress_http.fault.web.aborts_injected",
			wantName: "http.fault.aborts_injected",
			wantTags: []Tag{{TagFaultDownstreamCluster, "web"}, {TagHTTPConnManagerPrefix, "ingress_http"}}},
		{name: "rds_route_config", stat: "http.ingress_http.rds.local_route.config_reload",
			wantName: "http.rds.config_reload",
			wantTags: []Tag{{TagRDSRouteConfig, "local_route"}, {TagHTTPConnManagerPrefix, "ingress_http"}}},
		{name: "ext_authz_http", stat: "http.ingress_http.ext_authz.authz1.ok",
			wantName: "http.ext_authz.ok",
			wantTags: []Tag{{TagExtAuthzPrefix, "authz1"}, {TagHTTPConnManagerPrefix, "ingress_http"}}},
		{name: "ext_authz_cluster", stat: "cluster.backend.ext_authz.authz1.denied",
			wantName: "cluster.ext_authz.denied",
			wantTags: []Tag{{TagClusterName, "backend"}, {TagExtAuthzPrefix, "authz1"}}},
		{name: "ssl_cipher_listener", stat: "listener.127.0.0.1_443.ssl.ciphers.ECDHE-RSA-AES128-GCM-SHA256",
			wantName: "listener.ssl.ciphers",
			wantTags: []Tag{{TagSSLCipher, "ECDHE-RSA-AES128-GCM-SHA256"}, {TagListenerAddress, "127.0.0.1_443"}}},
		{name: "ssl_cipher_suite_cluster", stat: "cluster.backend.ssl.ciphers.TLS_AES_128_GCM_SHA256",
			wantName: "cluster.ssl.ciphers",
			wantTags: []Tag{{TagSSLCipherSuite, "TLS_AES_128_GCM_SHA256"}, {TagClusterName, "backend"}}},
		{name: "ssl_curve", stat: "listener.127.0.0.1_443.ssl.curves.X25519",
			wantName: "listener.ssl.curves",
			wantTags: []Tag{{TagSSLCurve, "X25519"}, {TagListenerAddress, "127.0.0.1_443"}}},
		{name: "ssl_version", stat: "cluster.backend.ssl.versions.TLSv1.3",
			wantName: "cluster.ssl.versions",
			wantTags: []Tag{{TagSSLVersion, "TLSv1.3"}, {TagClusterName, "backend"}}},
		{name: "local_http_ratelimit", stat: "http_local_rate_limiter.http_local_rate_limit.rate_limited",
			wantName: "http_local_rate_limit.rate_limited",
			wantTags: []Tag{{TagLocalHTTPRatelimitPrefix, "http_local_rate_limiter"}}},
		{name: "local_network_ratelimit", stat: "local_rate_limit.ingress_tcp.rate_limited",
			wantName: "local_rate_limit.rate_limited", wantTags: []Tag{{TagLocalNetworkRatelimitPrefix, "ingress_tcp"}}},
		{name: "ratelimit", stat: "ratelimit.rl.over_limit",
			wantName: "ratelimit.over_limit", wantTags: []Tag{{TagRatelimitPrefix, "rl"}}},
		{name: "redis", stat: "redis.cache.command.get.total",
			wantName: "redis.command.get.total", wantTags: []Tag{{TagRedisPrefix, "cache"}}},
		{name: "dynamo_operation", stat: "http.egress.dynamodb.operation.GetItem.upstream_rq_time",
			wantName: "http.dynamodb.operation.upstream_rq_time",
			wantTags: []Tag{{TagDynamoOperation, "GetItem"}, {TagHTTPConnManagerPrefix, "egress"}}},
		{name: "no_tags_server", stat: "server.live", wantName: "server.live"},
		{name: "no_tags_cluster_manager", stat: "cluster_manager.active_clusters", wantName: "cluster_manager.active_clusters"},
		// "cluster.$.**" needs a token after the cluster name.
		{name: "cluster_without_stat", stat: "cluster.foo", wantName: "cluster.foo"},
	}
	e := DefaultTagExtractor()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotName, gotTags := e.Extract(tc.stat)
			if gotName != tc.wantName {
				t.Errorf("Extract(%q) name = %q, want %q", tc.stat, gotName, tc.wantName)
			}
			if diff := cmp.Diff(tc.wantTags, gotTags, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Extract(%q) tags (-want +got):\n%s", tc.stat, diff)
			}
		})
	}
}

func TestNewTagExtractor(t *testing.T) {
	tests := []struct {
		name        string
		specs       []TagSpec
		useDefaults bool
		stat        string
		wantName    string
		wantTags    []Tag
		wantErr     string
	}{
		{
			// The TagSpecifier doc's example 1.
			name:     "custom_regex_two_groups",
			specs:    []TagSpec{{Name: "envoy.cluster_name", Regex: `^cluster\.((.+?)\.)`}},
			stat:     "cluster.foo_cluster.upstream_rq_timeout",
			wantName: "cluster.upstream_rq_timeout",
			wantTags: []Tag{{"envoy.cluster_name", "foo_cluster"}},
		},
		{
			// The TagSpecifier doc's example 2, whose lookahead herald rewrites.
			name: "custom_regex_doc_lookahead",
			specs: []TagSpec{
				{Name: "envoy.http_user_agent", Regex: `^http(?=\.).*?\.user_agent\.((.+?)\.)\w+?$`},
				{Name: "envoy.http_conn_manager_prefix", Regex: `^http\.((.*?)\.)`},
			},
			stat:     "http.connection_manager_1.user_agent.ios.downstream_cx_total",
			wantName: "http.user_agent.downstream_cx_total",
			wantTags: []Tag{{"envoy.http_user_agent", "ios"}, {"envoy.http_conn_manager_prefix", "connection_manager_1"}},
		},
		{
			// A single group is both the removed part and the value.
			name:     "custom_regex_one_group",
			specs:    []TagSpec{{Name: "shard", Regex: `\.(shard_\d+)$`}},
			stat:     "cluster_manager.x.shard_7",
			wantName: "cluster_manager.x.",
			wantTags: []Tag{{"shard", "shard_7"}},
		},
		{
			name:     "fixed_value",
			specs:    []TagSpec{{Name: "region", FixedValue: "eu"}},
			stat:     "server.live",
			wantName: "server.live",
			wantTags: []Tag{{"region", "eu"}},
		},
		{
			name:        "fixed_value_after_defaults",
			specs:       []TagSpec{{Name: "region", FixedValue: "eu"}},
			useDefaults: true,
			stat:        "cluster.b.upstream_rq_total",
			wantName:    "cluster.upstream_rq_total",
			wantTags:    []Tag{{"region", "eu"}, {TagClusterName, "b"}},
		},
		{
			// use_all_default_tags: false with a default tag named alone.
			name:     "default_by_name_only",
			specs:    []TagSpec{{Name: TagClusterName}},
			stat:     "cluster.b.upstream_rq_200",
			wantName: "cluster.upstream_rq_200",
			wantTags: []Tag{{TagClusterName, "b"}},
		},
		{
			name:     "no_defaults_no_specs",
			stat:     "cluster.b.upstream_rq_total",
			wantName: "cluster.b.upstream_rq_total",
		},
		{
			// The default extractor runs first and wins for a shared name.
			name:        "duplicate_name_first_match_wins",
			specs:       []TagSpec{{Name: TagClusterName, Regex: `^cluster\.[^.]+\.((\w+))$`}},
			useDefaults: true,
			stat:        "cluster.b.upstream_rq_total",
			wantName:    "cluster.upstream_rq_total",
			wantTags:    []Tag{{TagClusterName, "b"}},
		},
		{name: "empty_name", specs: []TagSpec{{Regex: `(x)`}}, wantErr: "tag_name cannot be empty"},
		{name: "unknown_default", specs: []TagSpec{{Name: "envoy.nope"}}, wantErr: `no default regex for name: "envoy.nope"`},
		{name: "bad_regex", specs: []TagSpec{{Name: "x", Regex: `(`}}, wantErr: "invalid regex"},
		{name: "negative_lookahead", specs: []TagSpec{{Name: "x", Regex: `^a(?!b)(.)`}}, wantErr: "lookaround"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewTagExtractor(tc.specs, tc.useDefaults)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewTagExtractor() error = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewTagExtractor() error = %v", err)
			}
			gotName, gotTags := e.Extract(tc.stat)
			if gotName != tc.wantName {
				t.Errorf("Extract(%q) name = %q, want %q", tc.stat, gotName, tc.wantName)
			}
			if diff := cmp.Diff(tc.wantTags, gotTags, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Extract(%q) tags (-want +got):\n%s", tc.stat, diff)
			}
		})
	}
}

func TestRegexPrefix(t *testing.T) {
	tests := []struct {
		name  string
		regex string
		want  string
	}{
		{name: "dot", regex: `^cluster\.((.*?)\.)`, want: "cluster"},
		{name: "lookahead", regex: `^http(?=\.).*?\.x`, want: "http"},
		{name: "whole", regex: `^server$`, want: "server"},
		{name: "unanchored", regex: `_rq(_(\d{3}))$`, want: ""},
		{name: "group_first", regex: `^(?:listener|cluster)\.`, want: ""},
		{name: "no_dot_after_word", regex: `^http_x`, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := regexPrefix(tc.regex); got != tc.want {
				t.Errorf("regexPrefix(%q) = %q, want %q", tc.regex, got, tc.want)
			}
		})
	}
}

func TestStoreCachesTags(t *testing.T) {
	s := NewStore()
	c := s.Scope("cluster.backend_service.").Counter("upstream_rq_total")
	if got, want := c.TagExtractedName(), "cluster.upstream_rq_total"; got != want {
		t.Errorf("TagExtractedName() = %q, want %q", got, want)
	}
	if diff := cmp.Diff([]Tag{{TagClusterName, "backend_service"}}, c.Tags()); diff != "" {
		t.Errorf("Tags() (-want +got):\n%s", diff)
	}
	// NewStoreWith(nil) extracts nothing.
	raw := NewStoreWith(nil).Counter("cluster.backend_service.upstream_rq_total")
	if got := raw.TagExtractedName(); got != raw.Name() || len(raw.Tags()) != 0 {
		t.Errorf("nil extractor: TagExtractedName() = %q, Tags() = %v, want name unchanged and no tags", got, raw.Tags())
	}
}
