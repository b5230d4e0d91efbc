package tlsx

import (
	"crypto/tls"
	"fmt"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// common is a built CommonTlsContext.
type common struct {
	params params
	certs  []tls.Certificate
	alpn   []string
	v      *validator // nil without validation_context
}

var commonFields = []string{"tls_params", "tls_certificates", "validation_context", "alpn_protocols"}

// commonIssues: SDS and certificate providers come with issue #5's SDS
// slice; the rest is refused without an issue.
var commonIssues = map[string]string{
	"tls_certificate_sds_secret_configs":   "#5",
	"validation_context_sds_secret_config": "#5",
	"combined_validation_context":          "#5",
}

var certificateFields = []string{"certificate_chain", "private_key"}

var certificateIssues = map[string]string{"ocsp_staple": "#5", "watched_directory": "#5"}

func buildCommon(c *tlsv3.CommonTlsContext, path string, server bool) (*common, configerr.List) {
	errs := configerr.RejectUnlisted(c, path, commonIssues, commonFields...)
	out := &common{alpn: c.GetAlpnProtocols()}
	var perrs configerr.List
	out.params, perrs = buildParams(c.GetTlsParams(), path+".tls_params", server)
	errs = append(errs, perrs...)
	for i, tc := range c.GetTlsCertificates() {
		p := fmt.Sprintf("%s.tls_certificates[%d]", path, i)
		cert, cerrs := loadCertificate(tc, p)
		errs = append(errs, cerrs...)
		if len(cerrs) == 0 {
			out.certs = append(out.certs, cert)
		}
	}
	if vc := c.GetValidationContext(); vc != nil {
		v, verrs := buildValidator(vc, path+".validation_context")
		errs = append(errs, verrs...)
		out.v = v
	}
	return out, errs
}

// loadCertificate reads one TlsCertificate's chain and key (PEM).
func loadCertificate(tc *tlsv3.TlsCertificate, path string) (tls.Certificate, configerr.List) {
	errs := configerr.RejectUnlisted(tc, path, certificateIssues, certificateFields...)
	chain, ferr := LoadDataSource(tc.GetCertificateChain(), path+".certificate_chain")
	if ferr != nil {
		errs = append(errs, ferr)
	}
	key, kerr := LoadDataSource(tc.GetPrivateKey(), path+".private_key")
	if kerr != nil {
		errs = append(errs, kerr)
	}
	if len(errs) > 0 {
		return tls.Certificate{}, errs
	}
	// X509KeyPair parses the leaf into Certificate.Leaf, which certificate
	// selection by SNI and key type reads.
	cert, err := tls.X509KeyPair(chain, key)
	if err != nil {
		return tls.Certificate{}, configerr.List{configerr.At(path, "failed to load certificate chain and private key: %v", err)}
	}
	return cert, nil
}
