package tlsx

import (
	"crypto/tls"
	"fmt"
	"strings"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// versions maps TlsParameters.TlsProtocol to Go's version numbers.
var versions = map[tlsv3.TlsParameters_TlsProtocol]uint16{
	tlsv3.TlsParameters_TLSv1_0: tls.VersionTLS10,
	tlsv3.TlsParameters_TLSv1_1: tls.VersionTLS11,
	tlsv3.TlsParameters_TLSv1_2: tls.VersionTLS12,
	tlsv3.TlsParameters_TLSv1_3: tls.VersionTLS13,
}

// VersionName is the name BoringSSL's SSL_get_version gives a version, as
// used in Envoy's ssl.versions.<name> stats.
func VersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return "unknown_ssl_version"
}

// cipherSuites maps the OpenSSL/BoringSSL cipher names Envoy's
// cipher_suites takes to Go's suite IDs. Suites Go does not implement
// (PSK, CBC-SHA384, ...) are absent and refused by name.
var cipherSuites = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"ECDHE-ECDSA-AES128-SHA256":     tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-RSA-AES128-SHA256":       tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
	"AES128-SHA256":                 tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	"DES-CBC3-SHA":                  tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA,
	"ECDHE-RSA-DES-CBC3-SHA":        tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA,
}

// tls13Suites are the TLS 1.3 suites; their BoringSSL names equal Go's.
var tls13Suites = []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256}

// cipherNames is the reverse of cipherSuites plus the TLS 1.3 suites: the
// name of ssl.ciphers.<name> for a negotiated suite.
var cipherNames = func() map[uint16]string {
	m := make(map[uint16]string, len(cipherSuites)+len(tls13Suites))
	for n, id := range cipherSuites {
		m[id] = n
	}
	for _, id := range tls13Suites {
		m[id] = tls.CipherSuiteName(id)
	}
	return m
}()

// CipherName is the OpenSSL name of a negotiated cipher suite, as in
// Envoy's ssl.ciphers.<name> stats.
func CipherName(id uint16) string {
	if n, ok := cipherNames[id]; ok {
		return n
	}
	return "unknown_ssl_cipher"
}

// Envoy's default cipher lists (common.proto, non-FIPS builds): the same
// for servers and clients. "[A|B]" groups are equal preference in
// BoringSSL; Go orders suites itself, so the groups flatten.
var defaultCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// curves maps BoringSSL's group names (ecdh_curves) to Go's CurveIDs.
var curves = map[string]tls.CurveID{
	"X25519":         tls.X25519,
	"P-256":          tls.CurveP256,
	"prime256v1":     tls.CurveP256,
	"P-384":          tls.CurveP384,
	"secp384r1":      tls.CurveP384,
	"P-521":          tls.CurveP521,
	"secp521r1":      tls.CurveP521,
	"X25519MLKEM768": tls.X25519MLKEM768,
}

// CurveName is BoringSSL's SSL_get_curve_name for a group, as in Envoy's
// ssl.curves.<name> stats.
func CurveName(id tls.CurveID) string {
	switch id {
	case tls.X25519:
		return "X25519"
	case tls.CurveP256:
		return "P-256"
	case tls.CurveP384:
		return "P-384"
	case tls.CurveP521:
		return "P-521"
	case tls.X25519MLKEM768:
		return "X25519MLKEM768"
	}
	return "unknown_ssl_curve"
}

// Envoy's default curves (common.proto, non-FIPS): X25519, P-256.
var defaultCurves = []tls.CurveID{tls.X25519, tls.CurveP256}

// params is a built TlsParameters.
type params struct {
	min, max uint16
	ciphers  []uint16
	curves   []tls.CurveID
}

// buildParams reads tls_params; server selects the server defaults
// (maximum TLSv1_3; clients default to TLSv1_2, common.proto).
func buildParams(p *tlsv3.TlsParameters, path string, server bool) (params, configerr.List) {
	out := params{min: tls.VersionTLS12, max: tls.VersionTLS12, ciphers: defaultCipherSuites, curves: defaultCurves}
	if server {
		out.max = tls.VersionTLS13
	}
	if p == nil {
		return out, nil
	}
	errs := configerr.CheckFields(p, path, "tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites", "ecdh_curves")
	if v, ok := versions[p.GetTlsMinimumProtocolVersion()]; ok {
		out.min = v
	}
	if v, ok := versions[p.GetTlsMaximumProtocolVersion()]; ok {
		out.max = v
	}
	if out.min > out.max {
		errs = append(errs, configerr.At(path, "tls_minimum_protocol_version %s is above tls_maximum_protocol_version %s",
			VersionName(out.min), VersionName(out.max)))
	}
	if cs := p.GetCipherSuites(); len(cs) > 0 {
		out.ciphers = nil
		for i, entry := range cs {
			ids, err := parseCipherList(entry)
			if err != nil {
				errs = append(errs, configerr.At(fmt.Sprintf("%s.cipher_suites[%d]", path, i), "%v", err))
				continue
			}
			out.ciphers = append(out.ciphers, ids...)
		}
	}
	if cv := p.GetEcdhCurves(); len(cv) > 0 {
		out.curves = nil
		for i, entry := range cv {
			for _, name := range strings.Split(entry, ":") {
				id, ok := curves[name]
				if !ok {
					errs = append(errs, configerr.At(fmt.Sprintf("%s.ecdh_curves[%d]", path, i), "curve %q is not supported by herald", name).
						WithHint("supported: X25519, P-256, P-384, P-521, X25519MLKEM768"))
					continue
				}
				out.curves = append(out.curves, id)
			}
		}
	}
	return out, errs
}

// parseCipherList reads one cipher_suites entry: a name, a BoringSSL
// equal-preference group "[A|B]", or several joined with ':' (Envoy joins
// the entries with ':' and hands the list to SSL_CTX_set_strict_cipher_list,
// so each entry may itself be a list).
func parseCipherList(entry string) ([]uint16, error) {
	var ids []uint16
	for _, part := range strings.Split(entry, ":") {
		part = strings.TrimSpace(part)
		if strings.HasPrefix(part, "[") && strings.HasSuffix(part, "]") {
			part = part[1 : len(part)-1]
		}
		for _, name := range strings.Split(part, "|") {
			if name == "" {
				continue
			}
			if strings.ContainsAny(name[:1], "!-+@") {
				return nil, fmt.Errorf("cipher list operator in %q is not supported by herald; list the ciphers by name", name)
			}
			id, ok := cipherSuites[name]
			if !ok {
				return nil, fmt.Errorf("cipher suite %q is not supported by herald (Go's crypto/tls does not implement it)", name)
			}
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("empty cipher list")
	}
	return ids, nil
}
