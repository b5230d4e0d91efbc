package snapshot_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/snapshot"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"

	_ "github.com/herald-proxy/herald/extensions/all"
)

const hcm = `
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          route_config: { virtual_hosts: [ { name: v, domains: ["*"], routes: [ { match: { prefix: "/" }, direct_response: { status: 200 } } ] } ] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }`

const tcp = `
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: c }`

const tlsInspector = "    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }\n"

// certPEM and keyPEM are a self-signed test certificate, JSON-quoted for
// the YAML flow style.
var certPEM, keyPEM = func() (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		panic(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	c := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	k := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	return strconv.Quote(string(c)), strconv.Quote(string(k))
}()

func listener(extra, chains string) string {
	return `static_resources:
  clusters:
  - name: c
    load_assignment: { cluster_name: c, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } } ] } ] }
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
` + extra + chains
}

func TestBuildListeners(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "http connection manager", yaml: listener("", "    filter_chains:\n    - filters:"+hcm+"\n")},
		{name: "tcp proxy", yaml: listener("", "    filter_chains:\n    - filters:"+tcp+"\n")},
		{name: "terminal filter not last", yaml: listener("", "    filter_chains:\n    - filters:"+tcp+hcm+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains[0].filters[0]: terminal filter envoy.filters.network.tcp_proxy must be the last filter of its chain"},
		{name: "two chains with the same match", yaml: listener("", "    filter_chains:\n    - name: a\n      filters:"+tcp+"\n    - name: b\n      filters:"+tcp+"\n"),
			wantErr: `static_resources.listeners[0].filter_chains[1].filter_chain_match: filter chain "b" has the same matching rules defined as "a" (filter_chains[0])`},
		{name: "chains routed by SNI", yaml: listener(tlsInspector, "    filter_chains:\n    - filter_chain_match: { server_names: [a.example.com] }\n      filters:"+tcp+
			"\n    - filter_chain_match: { server_names: [\"*.example.com\"] }\n      filters:"+tcp+"\n")},
		{name: "overlapping server names", yaml: listener("", "    filter_chains:\n    - filter_chain_match: { server_names: [a.com, b.com] }\n      filters:"+tcp+
			"\n    - filter_chain_match: { server_names: [b.com] }\n      filters:"+tcp+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains[1].filter_chain_match: multiple filter chains with overlapping matching rules are defined"},
		{name: "partial wildcard", yaml: listener("", "    filter_chains:\n    - filter_chain_match: { server_names: [\"a*.com\"] }\n      filters:"+tcp+"\n"),
			wantErr: `filter_chains[0].filter_chain_match.server_names[0]: partial wildcards are not supported in "server_names"`},
		{name: "bad CIDR", yaml: listener("", "    filter_chains:\n    - filter_chain_match: { prefix_ranges: [ { address_prefix: 10.0.0.0, prefix_len: 40 } ] }\n      filters:"+tcp+"\n"),
			wantErr: "filter_chain_match.prefix_ranges[0].prefix_len: invalid prefix length 40"},
		{name: "filter_chain_matcher with named chains", yaml: listener("    filter_chain_matcher: { on_no_match: { action: { name: a, typed_config: { \"@type\": type.googleapis.com/google.protobuf.StringValue, value: x } } } }\n",
			"    filter_chains:\n    - name: x\n      filters:"+tcp+"\n    - name: y\n      filters:"+tcp+"\n")},
		{name: "filter_chain_matcher needs chain names", yaml: listener("    filter_chain_matcher: { on_no_match: { action: { name: a, typed_config: { \"@type\": type.googleapis.com/google.protobuf.StringValue, value: x } } } }\n",
			"    filter_chains:\n    - filters:"+tcp+"\n"),
			wantErr: "static_resources.listeners[0].filter_chains[0].name: filter_chain_matcher requires every filter chain to have a name"},
		{name: "filter_chain_matcher needs unique chain names", yaml: listener("    filter_chain_matcher: { on_no_match: { action: { name: a, typed_config: { \"@type\": type.googleapis.com/google.protobuf.StringValue, value: x } } } }\n",
			"    filter_chains:\n    - name: x\n      filters:"+tcp+"\n    - name: x\n      filters:"+tcp+"\n"),
			wantErr: `static_resources.listeners[0].filter_chains[1].name: filter_chain_matcher requires uniquely named filter chains ("x" is also filter_chains[0])`},
		{name: "filter_chain_matcher action must name a chain", yaml: listener("    filter_chain_matcher: { on_no_match: { action: { name: a, typed_config: { \"@type\": type.googleapis.com/google.protobuf.UInt32Value, value: 1 } } } }\n",
			"    filter_chains:\n    - name: x\n      filters:"+tcp+"\n"),
			wantErr: "static_resources.listeners[0].filter_chain_matcher.on_no_match.action.typed_config: the action of filter_chain_matcher must be google.protobuf.StringValue"},
		{name: "filter_chain_matcher unknown input", yaml: listener("    filter_chain_matcher: { matcher_tree: { input: { name: h, typed_config: { \"@type\": type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput, header_name: x } }, exact_match_map: { map: { a: { action: { name: a, typed_config: { \"@type\": type.googleapis.com/google.protobuf.StringValue, value: x } } } } } } }\n",
			"    filter_chains:\n    - name: x\n      filters:"+tcp+"\n"),
			wantErr: "filter_chain_matcher.matcher_tree.input.typed_config: input"},
		{name: "use_original_dst with original_dst", yaml: listener("    use_original_dst: true\n    listener_filters:\n    - name: envoy.filters.listener.original_dst\n      typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst }\n",
			"    filter_chains:\n    - filters:"+tcp+"\n")},
		{name: "unknown network filter named", yaml: listener("", "    filter_chains:\n    - filters:\n      - name: envoy.filters.network.redis_proxy\n        typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy, stat_prefix: r, settings: { op_timeout: 1s } }\n"),
			wantErr: `static_resources.listeners[0].filter_chains[0].filters[0].typed_config: network filter "envoy.filters.network.redis_proxy"`},
		{name: "TLS transport socket", yaml: listener(tlsInspector, "    filter_chains:\n    - filter_chain_match: { transport_protocol: tls }\n      transport_socket_connect_timeout: 2s\n      transport_socket:\n        name: envoy.transport_sockets.tls\n"+
			"        typed_config:\n          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext\n"+
			"          common_tls_context: { alpn_protocols: [h2], tls_certificates: [ { certificate_chain: { inline_string: "+certPEM+" }, private_key: { inline_string: "+keyPEM+" } } ] }\n      filters:"+hcm+"\n")},
		{name: "TLS without a certificate", yaml: listener("", "    filter_chains:\n    - transport_socket:\n        name: envoy.transport_sockets.tls\n        typed_config: { \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext }\n      filters:"+tcp+"\n"),
			wantErr: `static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates: a server TLS context needs at least one certificate`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := bootstrap.Load(bootstrap.Options{YAML: tc.yaml})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			store := stats.NewStore()
			mgr := upstream.NewManager(store)
			defer mgr.Close()
			if err := mgr.Apply(context.Background(), cfg.Bootstrap.GetStaticResources().GetClusters(), func(int) string { return "c" }); err != nil {
				t.Fatalf("clusters: %v", err)
			}
			snap, err := snapshot.Build(cfg.Bootstrap, snapshot.Deps{Stats: store, Clusters: mgr})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v\nwant it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(snap.Listeners) != 1 || snap.Listeners[0].Chains[0].Terminal == nil {
				t.Fatalf("built %+v", snap.Listeners)
			}
		})
	}
}
