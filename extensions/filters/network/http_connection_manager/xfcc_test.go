package httpconnectionmanager_test

import (
	"strings"
	"testing"

	httpconnectionmanager "github.com/herald-proxy/herald/extensions/filters/network/http_connection_manager"
	"github.com/herald-proxy/herald/internal/http/connmgr"
)

func TestBuildXFCC(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		wantMode    connmgr.ForwardClientCert
		wantDetails connmgr.ClientCertDetails
	}{
		// Envoy's default is SANITIZE.
		{name: "unset", wantMode: connmgr.ForwardClientCertSanitize},
		{name: "sanitize", yaml: "forward_client_cert_details: SANITIZE\n", wantMode: connmgr.ForwardClientCertSanitize},
		{name: "forward only", yaml: "forward_client_cert_details: FORWARD_ONLY\n", wantMode: connmgr.ForwardClientCertForwardOnly},
		{name: "always forward only", yaml: "forward_client_cert_details: ALWAYS_FORWARD_ONLY\n", wantMode: connmgr.ForwardClientCertAlwaysForwardOnly},
		{
			name:        "append forward with every detail",
			yaml:        "forward_client_cert_details: APPEND_FORWARD\nset_current_client_cert_details: { subject: true, cert: true, chain: true, dns: true, uri: true }\n",
			wantMode:    connmgr.ForwardClientCertAppendForward,
			wantDetails: connmgr.ClientCertSubject | connmgr.ClientCertCert | connmgr.ClientCertChain | connmgr.ClientCertDNS | connmgr.ClientCertURI,
		},
		{
			name:        "sanitize set with subject and URI",
			yaml:        "forward_client_cert_details: SANITIZE_SET\nset_current_client_cert_details: { subject: true, uri: true }\n",
			wantMode:    connmgr.ForwardClientCertSanitizeSet,
			wantDetails: connmgr.ClientCertSubject | connmgr.ClientCertURI,
		},
		// subject is a BoolValue: false set explicitly is off.
		{
			name:        "subject false",
			yaml:        "forward_client_cert_details: APPEND_FORWARD\nset_current_client_cert_details: { subject: false, dns: true }\n",
			wantMode:    connmgr.ForwardClientCertAppendForward,
			wantDetails: connmgr.ClientCertDNS,
		},
		// Envoy accepts details with any mode and ignores them outside
		// APPEND_FORWARD and SANITIZE_SET.
		{
			name:        "details with forward only are accepted",
			yaml:        "forward_client_cert_details: FORWARD_ONLY\nset_current_client_cert_details: { uri: true }\n",
			wantMode:    connmgr.ForwardClientCertForwardOnly,
			wantDetails: connmgr.ClientCertURI,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := httpconnectionmanager.Build(parse(t, "stat_prefix: s\n"+tc.yaml+routeToBackend+router), buildContext(t))
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			cfg := f.(*httpconnectionmanager.Filter).Config()
			if cfg.ForwardClientCert != tc.wantMode {
				t.Errorf("ForwardClientCert = %d, want %d", cfg.ForwardClientCert, tc.wantMode)
			}
			if cfg.SetClientCertDetails != tc.wantDetails {
				t.Errorf("SetClientCertDetails = %05b, want %05b", cfg.SetClientCertDetails, tc.wantDetails)
			}
		})
	}
}

func TestBuildXFCCInvalid(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // below hcmPath
	}{
		{
			name:    "issuer",
			yaml:    "forward_client_cert_details: APPEND_FORWARD\nset_current_client_cert_details: { issuer: true }\n",
			wantErr: ".set_current_client_cert_details.issuer: issuer is not supported by herald yet",
		},
		{
			name:    "JSON format",
			yaml:    "forward_client_cert_details: APPEND_FORWARD\nset_current_client_cert_details: { format: JSON }\n",
			wantErr: ".set_current_client_cert_details.format: format is not supported by herald yet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := httpconnectionmanager.Build(parse(t, "stat_prefix: s\n"+tc.yaml+routeToBackend+router), buildContext(t))
			if err == nil {
				t.Fatalf("Build succeeded, want error %q", hcmPath+tc.wantErr)
			}
			if !strings.Contains(err.Error(), hcmPath+tc.wantErr) {
				t.Errorf("Build error:\n%v\nwant it to contain %q", err, hcmPath+tc.wantErr)
			}
		})
	}
}
