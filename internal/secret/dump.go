package secret

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ConfigDump is admin /config_dump's SecretsConfigDump (Envoy's
// SecretManagerImpl::dumpSecretConfigs): static secrets, dynamic active
// secrets with their version_info and last_updated, and dynamic warming
// secrets (no secret yet, only the name). Secrets are as configured or
// received, unredacted: the admin redacts private_key and password
// (udpa.annotations.sensitive) to "[redacted]" as Envoy does.
func (m *Manager) ConfigDump() (*adminv3.SecretsConfigDump, error) {
	out := &adminv3.SecretsConfigDump{}
	st := m.static.Load()
	for _, s := range st.list {
		a, err := anypb.New(s)
		if err != nil {
			return nil, err
		}
		out.StaticSecrets = append(out.StaticSecrets, &adminv3.SecretsConfigDump_StaticSecret{
			Name: s.GetName(), LastUpdated: timestamppb.New(st.updated), Secret: a,
		})
	}
	for _, p := range m.all() {
		p.mu.Lock()
		res := p.res
		p.mu.Unlock()
		if res == nil {
			a, err := anypb.New(&tlsv3.Secret{Name: p.name})
			if err != nil {
				return nil, err
			}
			out.DynamicWarmingSecrets = append(out.DynamicWarmingSecrets, &adminv3.SecretsConfigDump_DynamicSecret{
				Name: p.name, VersionInfo: "uninitialized", Secret: a,
			})
			continue
		}
		a, err := anypb.New(res.Message)
		if err != nil {
			return nil, err
		}
		out.DynamicActiveSecrets = append(out.DynamicActiveSecrets, &adminv3.SecretsConfigDump_DynamicSecret{
			Name: p.name, VersionInfo: res.Version, LastUpdated: timestamppb.New(res.LastUpdated), Secret: a,
		})
	}
	return out, nil
}

// Certificates is admin /certs for the manager's secrets: one entry per
// secret holding a certificate chain (cert_chain) or a trusted CA
// (ca_cert), static secrets first, then SDS secrets by name. Envoy lists
// one entry per TLS context; herald lists the secrets those contexts use.
func (m *Manager) Certificates(now time.Time) *adminv3.Certificates {
	out := &adminv3.Certificates{}
	add := func(s *tlsv3.Secret, orig *tlsv3.Secret) {
		var c adminv3.Certificate
		if tc := s.GetTlsCertificate(); tc != nil {
			c.CertChain = certDetails(tc.GetCertificateChain(), orig.GetTlsCertificate().GetCertificateChain(), now)
		}
		if vc := s.GetValidationContext(); vc != nil {
			c.CaCert = certDetails(vc.GetTrustedCa(), orig.GetValidationContext().GetTrustedCa(), now)
		}
		if len(c.CertChain)+len(c.CaCert) > 0 {
			out.Certificates = append(out.Certificates, &c)
		}
	}
	for _, s := range m.static.Load().list {
		if r, err := resolve(s); err == nil {
			add(r, s)
		}
	}
	for _, p := range m.all() {
		p.mu.Lock()
		res := p.res
		p.mu.Unlock()
		if cur := p.Current(); cur != nil && res != nil {
			add(cur, res.Message.(*tlsv3.Secret))
		}
	}
	return out
}

// certDetails describes every certificate of a PEM DataSource, as Envoy's
// Utility::certificateDetails. orig is the DataSource before its file was
// read (its path is reported; "<inline>" otherwise).
func certDetails(ds, orig *corev3.DataSource, now time.Time) []*adminv3.CertificateDetails {
	var data []byte
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		data = s.InlineBytes
	case *corev3.DataSource_InlineString:
		data = []byte(s.InlineString)
	default:
		return nil
	}
	path := orig.GetFilename()
	if path == "" {
		path = "<inline>"
	}
	var out []*adminv3.CertificateDetails
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return out
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			continue
		}
		d := &adminv3.CertificateDetails{
			Path:           path,
			SerialNumber:   fmt.Sprintf("%x", c.SerialNumber),
			ValidFrom:      timestamppb.New(c.NotBefore),
			ExpirationTime: timestamppb.New(c.NotAfter),
		}
		if left := c.NotAfter.Sub(now); left > 0 {
			d.DaysUntilExpiration = uint64(left / (24 * time.Hour))
		}
		for _, n := range c.DNSNames {
			d.SubjectAltNames = append(d.SubjectAltNames, &adminv3.SubjectAlternateName{Name: &adminv3.SubjectAlternateName_Dns{Dns: n}})
		}
		for _, u := range c.URIs {
			d.SubjectAltNames = append(d.SubjectAltNames, &adminv3.SubjectAlternateName{Name: &adminv3.SubjectAlternateName_Uri{Uri: u.String()}})
		}
		for _, ip := range c.IPAddresses {
			d.SubjectAltNames = append(d.SubjectAltNames, &adminv3.SubjectAlternateName{Name: &adminv3.SubjectAlternateName_IpAddress{IpAddress: ip.String()}})
		}
		out = append(out, d)
	}
}
