package tlsx

import (
	"crypto/tls"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/secret"
)

// common is a built CommonTlsContext. Its static part (certs, v) is read
// at build time; secrets from SDS (certProviders, vcProvider) are read each
// time one of them changes (see dynamic.go). Immutable.
type common struct {
	params params
	alpn   []string
	// certs are inline tls_certificates or static secrets; certPaths are
	// their YAML paths, for errors found when a server context checks
	// their OCSP staples. A certificate's ocsp_staple (DER) is in its
	// OCSPStaple, not yet parsed.
	certs     []tls.Certificate
	certPaths []string
	// v is the inline validation_context or a static secret's; nil
	// without one or when it comes from SDS.
	v *validator

	// slots are tls_certificate_sds_secret_configs in order, each a static
	// secret's certificate or an SDS provider; certProviders are the
	// providers among them.
	slots         []certSlot
	certProviders []*secret.Provider
	// vcProvider follows validation_context_sds_secret_config (alone or in
	// combined_validation_context, whose default_validation_context is
	// vcDefault, merged under the SDS one as Envoy's MergeFrom does).
	vcProvider *secret.Provider
	vcDefault  *tlsv3.CertificateValidationContext
	vcPath     string
}

// certSlot is one tls_certificate_sds_secret_configs entry.
type certSlot struct {
	static tls.Certificate
	prov   *secret.Provider // nil for a static secret
	path   string
}

// dynamic reports whether some secret comes from SDS.
func (c *common) dynamic() bool { return len(c.certProviders) > 0 || c.vcProvider != nil }

// providers lists every SDS provider the context follows.
func (c *common) providers() []*secret.Provider {
	out := append([]*secret.Provider(nil), c.certProviders...)
	if c.vcProvider != nil {
		out = append(out, c.vcProvider)
	}
	return out
}

var commonFields = []string{
	"tls_params", "tls_certificates", "validation_context", "alpn_protocols",
	"tls_certificate_sds_secret_configs", "validation_context_sds_secret_config", "combined_validation_context",
}

var certificateFields = []string{"certificate_chain", "private_key", "ocsp_staple"}

var certificateIssues = map[string]string{"watched_directory": "#5"}

// buildCommon builds a CommonTlsContext. secrets resolves SDS references;
// nil refuses them.
func buildCommon(c *tlsv3.CommonTlsContext, path string, server bool, secrets *secret.Manager) (*common, configerr.List) {
	errs := configerr.RejectUnlisted(c, path, nil, commonFields...)
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
			out.certPaths = append(out.certPaths, p)
		}
	}
	if len(c.GetTlsCertificates()) > 0 && len(c.GetTlsCertificateSdsSecretConfigs()) > 0 {
		// Envoy: "Only one of tls_certificates, tls_certificate_sds_secret_configs,
		// and tls_certificate_provider_instance may be used" (tls.proto).
		errs = append(errs, configerr.At(path+".tls_certificate_sds_secret_configs", "only one of tls_certificates and tls_certificate_sds_secret_configs may be used"))
	}
	for i, sc := range c.GetTlsCertificateSdsSecretConfigs() {
		p := fmt.Sprintf("%s.tls_certificate_sds_secret_configs[%d]", path, i)
		st, prov, serrs := resolveSecretConfig(sc, p, secrets)
		errs = append(errs, serrs...)
		switch {
		case prov != nil:
			out.certProviders = append(out.certProviders, prov)
			out.slots = append(out.slots, certSlot{prov: prov, path: p})
		case st != nil:
			cert, cerrs := certificateFromSecret(st, p)
			errs = append(errs, cerrs...)
			if len(cerrs) == 0 {
				out.certs = append(out.certs, cert)
				out.certPaths = append(out.certPaths, p)
				out.slots = append(out.slots, certSlot{static: cert, path: p})
			}
		}
	}

	var (
		vcSDS     *tlsv3.SdsSecretConfig
		vcSDSPath string
	)
	switch vt := c.GetValidationContextType().(type) {
	case *tlsv3.CommonTlsContext_ValidationContext:
		v, verrs := buildValidator(vt.ValidationContext, path+".validation_context")
		errs = append(errs, verrs...)
		out.v = v
	case *tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig:
		vcSDS, vcSDSPath = vt.ValidationContextSdsSecretConfig, path+".validation_context_sds_secret_config"
	case *tlsv3.CommonTlsContext_CombinedValidationContext:
		cp := path + ".combined_validation_context"
		cv := vt.CombinedValidationContext
		errs = append(errs, configerr.RejectUnlisted(cv, cp, nil, "default_validation_context", "validation_context_sds_secret_config")...)
		// Envoy checks default_validation_context when it merges; an
		// invalid one is a config error now rather than at the first secret.
		if _, verrs := buildValidator(cv.GetDefaultValidationContext(), cp+".default_validation_context"); len(verrs) > 0 {
			errs = append(errs, verrs...)
		}
		out.vcDefault = cv.GetDefaultValidationContext()
		vcSDS, vcSDSPath = cv.GetValidationContextSdsSecretConfig(), cp+".validation_context_sds_secret_config"
	}
	if vcSDS != nil {
		st, prov, serrs := resolveSecretConfig(vcSDS, vcSDSPath, secrets)
		errs = append(errs, serrs...)
		switch {
		case prov != nil:
			out.vcProvider, out.vcPath = prov, vcSDSPath
		case st != nil:
			v, verrs := validatorFromSecret(st, out.vcDefault, vcSDSPath)
			errs = append(errs, verrs...)
			out.v = v
		}
	}
	return out, errs
}

// resolveSecretConfig finds what an SdsSecretConfig names: a static
// secret when it has no sds_config (Envoy: "Unknown static secret: name"
// when there is none), else the SDS provider of sds_config and name.
func resolveSecretConfig(sc *tlsv3.SdsSecretConfig, path string, secrets *secret.Manager) (*tlsv3.Secret, *secret.Provider, configerr.List) {
	errs := configerr.CheckFields(sc, path, "name", "sds_config")
	if len(errs) > 0 {
		return nil, nil, errs
	}
	if secrets == nil {
		return nil, nil, configerr.List{configerr.At(path, "secrets need the server's secret manager (internal error)")}
	}
	if sc.GetSdsConfig() == nil {
		s := secrets.Static(sc.GetName())
		if s == nil {
			return nil, nil, configerr.List{configerr.At(path+".name", "unknown static secret: %s", sc.GetName()).
				WithHint("define it in static_resources.secrets, or set sds_config")}
		}
		return s, nil, nil
	}
	p, err := secrets.Provider(sc.GetSdsConfig(), sc.GetName())
	if err != nil {
		return nil, nil, configerr.List{configerr.At(path+".sds_config", "%v", err)}
	}
	return nil, p, nil
}

// certificateFromSecret loads the TlsCertificate of secret s, which a
// tls_certificate_sds_secret_configs entry at path named.
func certificateFromSecret(s *tlsv3.Secret, path string) (tls.Certificate, configerr.List) {
	tc := s.GetTlsCertificate()
	if tc == nil {
		return tls.Certificate{}, configerr.List{configerr.At(path, "secret %q is not a tls_certificate (it is %s)", s.GetName(), kindOf(s))}
	}
	return loadCertificate(tc, fmt.Sprintf("%s(secret %q).tls_certificate", path, s.GetName()))
}

// validatorFromSecret builds the CertificateValidationContext of secret
// s, merged over def (combined_validation_context) when def is non-nil.
func validatorFromSecret(s *tlsv3.Secret, def *tlsv3.CertificateValidationContext, path string) (*validator, configerr.List) {
	vc := s.GetValidationContext()
	if vc == nil {
		return nil, configerr.List{configerr.At(path, "secret %q is not a validation_context (it is %s)", s.GetName(), kindOf(s))}
	}
	if def != nil {
		// Envoy's getCombinedValidationContextConfig: the default, then
		// MergeFrom the SDS one (set singular fields win, lists append).
		merged := proto.Clone(def).(*tlsv3.CertificateValidationContext)
		proto.Merge(merged, vc)
		vc = merged
	}
	return buildValidator(vc, fmt.Sprintf("%s(secret %q).validation_context", path, s.GetName()))
}

func kindOf(s *tlsv3.Secret) string {
	if k := secret.Kind(s); k != "" {
		return k
	}
	return "empty"
}

// paths are the YAML paths of the certificates secretValues returns, in
// the same order.
func (c *common) paths() []string {
	if len(c.slots) == 0 {
		return c.certPaths
	}
	out := make([]string, len(c.slots))
	for i, sl := range c.slots {
		out[i] = sl.path
	}
	return out
}

// loadCertificate reads one TlsCertificate's chain and key (PEM), and its
// ocsp_staple (DER) into the certificate's OCSPStaple; a server context
// parses and checks it (serverStaples), a client context drops it, as
// Envoy's client contexts never use it.
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
	var staple []byte
	if ds := tc.GetOcspStaple(); ds != nil {
		if _, ok := ds.GetSpecifier().(*corev3.DataSource_InlineString); ok {
			// Envoy (tls_certificate_config_impl.cc, maybeReadOcspStaple).
			errs = append(errs, configerr.At(path+".ocsp_staple.inline_string", "OCSP staple cannot be provided via inline_string").
				WithHint("use filename or inline_bytes: the staple is DER"))
		} else if b, serr := LoadDataSource(ds, path+".ocsp_staple"); serr != nil {
			errs = append(errs, serr)
		} else {
			staple = b
		}
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
	cert.OCSPStaple = staple
	return cert, nil
}
