package httpconnectionmanager

import (
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/connmgr"
)

// supportedCertDetails are the SetCurrentClientCertDetails fields herald
// interprets; issuer and a JSON format are refused by name.
var supportedCertDetails = []string{"subject", "cert", "chain", "dns", "uri"}

// buildXFCC interprets forward_client_cert_details and
// set_current_client_cert_details into cfg
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-forwarded-client-cert).
// Envoy accepts details with any mode and uses them only with
// APPEND_FORWARD and SANITIZE_SET; so does herald.
func buildXFCC(p *hcmv3.HttpConnectionManager, path string, cfg *connmgr.Config) configerr.List {
	var errs configerr.List
	switch p.GetForwardClientCertDetails() {
	case hcmv3.HttpConnectionManager_SANITIZE:
		cfg.ForwardClientCert = connmgr.ForwardClientCertSanitize
	case hcmv3.HttpConnectionManager_FORWARD_ONLY:
		cfg.ForwardClientCert = connmgr.ForwardClientCertForwardOnly
	case hcmv3.HttpConnectionManager_APPEND_FORWARD:
		cfg.ForwardClientCert = connmgr.ForwardClientCertAppendForward
	case hcmv3.HttpConnectionManager_SANITIZE_SET:
		cfg.ForwardClientCert = connmgr.ForwardClientCertSanitizeSet
	case hcmv3.HttpConnectionManager_ALWAYS_FORWARD_ONLY:
		cfg.ForwardClientCert = connmgr.ForwardClientCertAlwaysForwardOnly
	default:
		errs = append(errs, configerr.At(path+".forward_client_cert_details", "unknown value %d", p.GetForwardClientCertDetails()))
	}
	d := p.GetSetCurrentClientCertDetails()
	if d == nil {
		return errs
	}
	dpath := path + ".set_current_client_cert_details"
	errs = append(errs, configerr.RejectUnlisted(d, dpath, nil, supportedCertDetails...)...)
	// Envoy: subject is a BoolValue that defaults to false.
	if d.GetSubject().GetValue() {
		cfg.SetClientCertDetails |= connmgr.ClientCertSubject
	}
	if d.GetCert() {
		cfg.SetClientCertDetails |= connmgr.ClientCertCert
	}
	if d.GetChain() {
		cfg.SetClientCertDetails |= connmgr.ClientCertChain
	}
	if d.GetUri() {
		cfg.SetClientCertDetails |= connmgr.ClientCertURI
	}
	if d.GetDns() {
		cfg.SetClientCertDetails |= connmgr.ClientCertDNS
	}
	return errs
}
