package tcpproxy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// buildTunnel builds a tcp_proxy with the given tunneling_config fields
// (YAML flow mapping body) and returns its tunnel config.
func buildTunnel(t *testing.T, tunneling string) (*tunnelConfig, error) {
	t.Helper()
	ctx, _ := tcpBuildContext(t)
	nf, err := Build(parseTCPProxy(t, "stat_prefix: db\ncluster: backend\ntunneling_config: "+tunneling+"\n", false), ctx)
	if err != nil {
		return nil, err
	}
	return nf.(*Filter).tunnel, nil
}

func TestBuildTunnelingConfig(t *testing.T) {
	tests := []struct {
		name         string
		tunneling    string
		wantPost     bool
		wantPostPath string
		wantHeaders  int
		wantProp     [2]bool // propagate headers, trailers
	}{
		{name: "connect", tunneling: "{ hostname: example.com:443 }"},
		{
			// Envoy: use_post without post_path posts to "/".
			name: "use_post default path", tunneling: "{ hostname: h:1, use_post: true }",
			wantPost: true, wantPostPath: "/",
		},
		{
			name: "use_post with post_path", tunneling: "{ hostname: h:1, use_post: true, post_path: /tunnel }",
			wantPost: true, wantPostPath: "/tunnel",
		},
		{
			name:        "headers_to_add with operators",
			tunneling:   `{ hostname: "%REQUESTED_SERVER_NAME%:443", headers_to_add: [{ header: { key: x-local, value: "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%" } }, { header: { key: x-b, value: b }, append_action: OVERWRITE_IF_EXISTS_OR_ADD }] }`,
			wantHeaders: 2,
		},
		{
			name:      "propagate",
			tunneling: "{ hostname: h:1, propagate_response_headers: true, propagate_response_trailers: true }",
			wantProp:  [2]bool{true, true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := buildTunnel(t, tc.tunneling)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if got.usePost != tc.wantPost || got.postPath != tc.wantPostPath {
				t.Errorf("use_post, post_path = %v, %q; want %v, %q", got.usePost, got.postPath, tc.wantPost, tc.wantPostPath)
			}
			if len(got.headers) != tc.wantHeaders {
				t.Errorf("headers_to_add = %d entries, want %d", len(got.headers), tc.wantHeaders)
			}
			if p := [2]bool{got.propagateHeaders, got.propagateTrailers}; p != tc.wantProp {
				t.Errorf("propagate = %v, want %v", p, tc.wantProp)
			}
		})
	}
}

func TestBuildTunnelingConfigInvalid(t *testing.T) {
	tests := []struct {
		name      string
		tunneling string
		wantErr   string // below tcpProxyPath + ".tunneling_config"
	}{
		{
			// Envoy: "Can't set a post path when POST method isn't used".
			name: "post_path without use_post", tunneling: "{ hostname: h:1, post_path: /x }",
			wantErr: ".post_path: can't set a post path when POST method isn't used",
		},
		{
			name: "post_path not a path", tunneling: "{ hostname: h:1, use_post: true, post_path: x }",
			wantErr: `.post_path: "x" is not a valid request path`,
		},
		{
			name: "unknown operator in hostname", tunneling: `{ hostname: "%NOPE%:443" }`,
			wantErr: ".hostname",
		},
		{
			// Envoy: ":-prefixed or host headers may not be modified".
			name: "pseudo-header in headers_to_add", tunneling: `{ hostname: h:1, headers_to_add: [{ header: { key: ":path", value: /x } }] }`,
			wantErr: ".headers_to_add[0].header.key: :-prefixed or host headers may not be modified",
		},
		{
			name: "host in headers_to_add", tunneling: `{ hostname: h:1, headers_to_add: [{ header: { key: Host, value: x } }] }`,
			wantErr: ".headers_to_add[0].header.key: :-prefixed or host headers may not be modified",
		},
		{
			name: "append with append_action", tunneling: `{ hostname: h:1, headers_to_add: [{ header: { key: a, value: x }, append: true, append_action: ADD_IF_ABSENT }] }`,
			wantErr: ".headers_to_add[0]: Both append and append_action are set",
		},
		{
			name: "bad operator in header value", tunneling: `{ hostname: h:1, headers_to_add: [{ header: { key: a, value: "%NOPE%" } }] }`,
			wantErr: ".headers_to_add[0].header.value",
		},
		{
			name: "request_id_extension", tunneling: `{ hostname: h:1, request_id_extension: { typed_config: { "@type": type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig } } }`,
			wantErr: ".request_id_extension: not supported by herald yet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := buildTunnel(t, tc.tunneling)
			want := tcpProxyPath + ".tunneling_config" + tc.wantErr
			if err == nil {
				t.Fatalf("Build succeeded, want error %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Build error:\n%v\nwant it to contain %q", err, want)
			}
		})
	}
}

func TestTunnelRequestHeaders(t *testing.T) {
	info := &streaminfo.Info{
		DownstreamLocalAddress:  netip.MustParseAddrPort("127.0.0.1:10001"),
		DownstreamRemoteAddress: netip.MustParseAddrPort("10.1.2.3:5555"),
		RequestedServerName:     "db.example.com",
	}
	f := func(fields ...string) []hhttp.HeaderField {
		var out []hhttp.HeaderField
		for i := 0; i < len(fields); i += 2 {
			out = append(out, hhttp.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return out
	}
	tests := []struct {
		name      string
		tunneling string
		secure    bool
		h2        bool
		want      []hhttp.HeaderField
		wantErr   string
	}{
		{
			name:      "connect with formatted hostname",
			tunneling: `{ hostname: "%REQUESTED_SERVER_NAME%:%DOWNSTREAM_LOCAL_PORT%" }`,
			h2:        true,
			want:      f(":method", "CONNECT", ":authority", "db.example.com:10001"),
		},
		{
			// Envoy prints "-" for an operator without a value in the
			// hostname (a text SubstitutionFormatString).
			name:      "unset operator in hostname",
			tunneling: `{ hostname: "%UPSTREAM_TRANSPORT_FAILURE_REASON%:1" }`,
			want:      f(":method", "CONNECT", ":authority", "-:1"),
		},
		{
			name:      "post over HTTP/2 over TLS",
			tunneling: `{ hostname: h:1, use_post: true, post_path: /t }`,
			secure:    true, h2: true,
			want: f(":method", "POST", ":authority", "h:1", ":path", "/t", ":scheme", "https"),
		},
		{
			// Envoy sets :scheme only for HTTP/2 and later.
			name:      "post over HTTP/1.1",
			tunneling: `{ hostname: h:1, use_post: true }`,
			want:      f(":method", "POST", ":authority", "h:1", ":path", "/"),
		},
		{
			name: "headers_to_add actions",
			tunneling: `{ hostname: h:1, headers_to_add: [
				{ header: { key: X-Remote, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" } },
				{ header: { key: x-a, value: "1" } },
				{ header: { key: x-a, value: "2" } },
				{ header: { key: x-b, value: "1" } },
				{ header: { key: x-b, value: "2" }, append_action: OVERWRITE_IF_EXISTS_OR_ADD },
				{ header: { key: x-c, value: "1" }, append_action: ADD_IF_ABSENT },
				{ header: { key: x-c, value: "2" }, append_action: ADD_IF_ABSENT },
				{ header: { key: x-d, value: "1" }, append_action: OVERWRITE_IF_EXISTS },
				{ header: { key: x-e, value: "1" }, append: false },
				{ header: { key: x-e, value: "2" }, append: false }] }`,
			want: f(":method", "CONNECT", ":authority", "h:1", "x-remote", "10.1.2.3",
				"x-a", "1", "x-a", "2", "x-b", "2", "x-c", "1", "x-e", "2"),
		},
		{
			// An operator without a value prints "" in a header value:
			// the header is skipped unless keep_empty_value.
			name: "empty values",
			tunneling: `{ hostname: h:1, headers_to_add: [
				{ header: { key: x-skip, value: "%UPSTREAM_TRANSPORT_FAILURE_REASON%" } },
				{ header: { key: x-keep, value: "%UPSTREAM_TRANSPORT_FAILURE_REASON%" }, keep_empty_value: true }] }`,
			want: f(":method", "CONNECT", ":authority", "h:1", "x-keep", ""),
		},
		{
			// A hostname that would split the request line fails the attempt.
			name:      "space in hostname",
			tunneling: `{ hostname: "a b:1" }`,
			wantErr:   "not a valid authority",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tun, err := buildTunnel(t, tc.tunneling)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			got, err := tun.requestHeaders(info, tc.secure, tc.h2)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("requestHeaders error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("requestHeaders: %v", err)
			}
			if diff := cmp.Diff(tc.want, got.Fields); diff != "" {
				t.Errorf("request headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTunnelHeaderValueInjection(t *testing.T) {
	// A value that turns into CR/LF at run time (here from the requested
	// server name) must fail the attempt, never reach the wire.
	tun, err := buildTunnel(t, `{ hostname: h:1, headers_to_add: [{ header: { key: x-sni, value: "%REQUESTED_SERVER_NAME%" } }] }`)
	if err != nil {
		t.Fatal(err)
	}
	info := &streaminfo.Info{RequestedServerName: "a\r\nx-evil: 1"}
	if _, err := tun.requestHeaders(info, false, false); err == nil {
		t.Fatal("requestHeaders accepted a value with CR LF")
	}
}
