package connmgr

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"strings"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/network"
)

// hdrXForwardedClientCert is Envoy's XFCC header
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-forwarded-client-cert).
const hdrXForwardedClientCert = "x-forwarded-client-cert"

// ForwardClientCert is HttpConnectionManager.forward_client_cert_details:
// what happens to x-forwarded-client-cert on a request.
type ForwardClientCert uint8

// Forward client cert modes, as Envoy's ForwardClientCertType. Envoy's
// ConnectionManagerUtility::mutateXfccRequestHeader
// (source/common/http/conn_manager_utility.cc) is the reference.
const (
	// ForwardClientCertSanitize removes the header from every request
	// (Envoy's default, the zero value).
	ForwardClientCertSanitize ForwardClientCert = iota
	// ForwardClientCertForwardOnly forwards the header unchanged when the
	// connection is mTLS (TLS with a client certificate), removes it
	// otherwise.
	ForwardClientCertForwardOnly
	// ForwardClientCertAppendForward appends this connection's element to
	// the header when the connection is mTLS, removes it otherwise.
	ForwardClientCertAppendForward
	// ForwardClientCertSanitizeSet replaces the header with this
	// connection's element when the connection is mTLS, removes it
	// otherwise.
	ForwardClientCertSanitizeSet
	// ForwardClientCertAlwaysForwardOnly never touches the header, mTLS or
	// not.
	ForwardClientCertAlwaysForwardOnly
)

// ClientCertDetails is HttpConnectionManager.set_current_client_cert_details:
// the parts of the client certificate an appended or set element carries
// besides By and Hash (always present when known). A bit set; zero means
// none.
type ClientCertDetails uint8

// Client certificate details. The element lists them in Envoy's order
// (Cert, Chain, Subject, URI, DNS: convertSetCurrentClientCertDetails),
// whatever the order of the config's fields.
const (
	// ClientCertCert: Cert="<URL-encoded PEM of the leaf>".
	ClientCertCert ClientCertDetails = 1 << iota
	// ClientCertChain: Chain="<URL-encoded PEM of every certificate the
	// client sent, leaf first>".
	ClientCertChain
	// ClientCertSubject: Subject="<RFC 2253 subject>", present even when
	// the subject is empty.
	ClientCertSubject
	// ClientCertURI: URI=<uri> per URI SAN; URI= when there is none.
	ClientCertURI
	// ClientCertDNS: DNS=<name> per DNS SAN; nothing when there is none.
	ClientCertDNS
)

// xfccConn is what one downstream connection contributes to
// x-forwarded-client-cert, computed once when the connection is served so
// that a keep-alive or HTTP/2 connection does not recompute it per request.
// Immutable after newXFCCConn.
type xfccConn struct {
	// mtls: the connection is TLS and the client presented a certificate
	// (Envoy's connection.ssl() && peerCertificatePresented()).
	mtls bool
	// elem is this proxy's element, ";"-joined keys; built only for
	// APPEND_FORWARD and SANITIZE_SET.
	elem string
}

// peerCertificates is what a TLS transport exposes (*tls.Conn, the QUIC
// listener's connection).
type peerCertificates interface {
	ConnectionState() tls.ConnectionState
}

// newXFCCConn computes the connection's XFCC state for cfg. Plain-text
// connections and modes that never look at the connection cost nothing.
func (cfg *Config) newXFCCConn(nc *network.Conn) xfccConn {
	switch cfg.ForwardClientCert {
	case ForwardClientCertSanitize, ForwardClientCertAlwaysForwardOnly:
		return xfccConn{}
	}
	if nc == nil || !nc.TLS {
		return xfccConn{}
	}
	ts, ok := nc.Conn.(peerCertificates)
	if !ok {
		return xfccConn{}
	}
	chain := ts.ConnectionState().PeerCertificates
	if len(chain) == 0 {
		return xfccConn{}
	}
	x := xfccConn{mtls: true}
	if cfg.ForwardClientCert == ForwardClientCertAppendForward || cfg.ForwardClientCert == ForwardClientCertSanitizeSet {
		x.elem = xfccElement(nc.LocalCertificate, chain, cfg.SetClientCertDetails)
	}
	return x
}

// mutateXFCC applies forward_client_cert_details to request headers h,
// as Envoy's mutateXfccRequestHeader. It allocates only to append to a
// header the client sent.
func mutateXFCC(h *hhttp.Headers, mode ForwardClientCert, x *xfccConn) {
	switch {
	case mode == ForwardClientCertAlwaysForwardOnly:
		return
	case mode == ForwardClientCertSanitize, !x.mtls:
		// "When Sanitize is set, or the connection is not mutual TLS,
		// remove the XFCC header."
		h.Del(hdrXForwardedClientCert)
		return
	}
	switch mode {
	case ForwardClientCertAppendForward:
		// Envoy: appendForwardedClientCert(value, ","); several header
		// lines are one comma-separated value.
		var cur string
		switch h.Count(hdrXForwardedClientCert) {
		case 0:
		case 1:
			cur = h.Get(hdrXForwardedClientCert)
		default:
			cur = strings.Join(h.Values(nil, hdrXForwardedClientCert), ",")
		}
		if cur == "" {
			h.Set(hdrXForwardedClientCert, x.elem)
		} else {
			h.Set(hdrXForwardedClientCert, cur+","+x.elem)
		}
	case ForwardClientCertSanitizeSet:
		h.Set(hdrXForwardedClientCert, x.elem)
	}
}

// xfccElement builds this proxy's XFCC element for a client that sent
// chain (leaf first), local being the certificate herald presented (nil
// when unknown: no By), in Envoy's key order: By (one per URI SAN of the
// local certificate), Hash, then Cert, Chain, Subject, URI, DNS as
// details selects.
func xfccElement(local *x509.Certificate, chain []*x509.Certificate, details ClientCertDetails) string {
	leaf := chain[0]
	var b strings.Builder
	sep := func() {
		if b.Len() > 0 {
			b.WriteByte(';')
		}
	}
	if local != nil {
		_, uris := subjectAltNames(local)
		for _, u := range uris {
			sep()
			b.WriteString("By=")
			b.WriteString(u)
		}
	}
	sum := sha256.Sum256(leaf.Raw)
	sep()
	b.WriteString("Hash=")
	b.WriteString(hex.EncodeToString(sum[:]))
	if details&ClientCertCert != 0 {
		sep()
		b.WriteString(`Cert="`)
		writeURLEncodedPEM(&b, leaf)
		b.WriteByte('"')
	}
	if details&ClientCertChain != 0 {
		sep()
		b.WriteString(`Chain="`)
		for _, c := range chain {
			writeURLEncodedPEM(&b, c)
		}
		b.WriteByte('"')
	}
	if details&(ClientCertSubject|ClientCertURI|ClientCertDNS) != 0 {
		dns, uris := subjectAltNames(leaf)
		if details&ClientCertSubject != 0 {
			// "The Subject key still exists even if the subject is empty."
			sep()
			b.WriteString(`Subject="`)
			b.WriteString(subjectRFC2253(leaf.RawSubject))
			b.WriteByte('"')
		}
		if details&ClientCertURI != 0 {
			// "The URI key still exists even if the URI is empty."
			if len(uris) == 0 {
				sep()
				b.WriteString("URI=")
			}
			for _, u := range uris {
				sep()
				b.WriteString("URI=")
				b.WriteString(u)
			}
		}
		if details&ClientCertDNS != 0 {
			for _, d := range dns {
				sep()
				b.WriteString("DNS=")
				b.WriteString(d)
			}
		}
	}
	return b.String()
}

// writeURLEncodedPEM writes c's PEM with Envoy's URL encoding of it
// (urlEncodedPemEncodedPeerCertificate: "\n" %0A, " " %20, "+" %2B,
// "/" %2F, "=" %3D; nothing else).
func writeURLEncodedPEM(b *strings.Builder, c *x509.Certificate) {
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	for _, ch := range p {
		switch ch {
		case '\n':
			b.WriteString("%0A")
		case ' ':
			b.WriteString("%20")
		case '+':
			b.WriteString("%2B")
		case '/':
			b.WriteString("%2F")
		case '=':
			b.WriteString("%3D")
		default:
			b.WriteByte(ch)
		}
	}
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// subjectAltNames returns the DNS and URI entries of c's subject
// alternative names as the certificate spells them (crypto/x509 would
// re-serialise URIs through net/url; Envoy forwards the IA5String).
func subjectAltNames(c *x509.Certificate) (dns, uris []string) {
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) > 0 {
			return nil, nil
		}
		rest := seq.Bytes
		for len(rest) > 0 {
			var gn asn1.RawValue
			var err error
			if rest, err = asn1.Unmarshal(rest, &gn); err != nil {
				return dns, uris
			}
			if gn.Class != asn1.ClassContextSpecific {
				continue
			}
			switch gn.Tag {
			case 2: // dNSName
				dns = append(dns, string(gn.Bytes))
			case 6: // uniformResourceIdentifier
				uris = append(uris, string(gn.Bytes))
			}
		}
	}
	return dns, uris
}

// attributeValue is one AttributeTypeAndValue with its value undecoded.
type attributeValue struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// rdnSET is one RelativeDistinguishedName (encoding/asn1 reads a slice
// type whose name ends in SET as SET OF).
type rdnSET []attributeValue

// shortNames are OpenSSL's short names of the attribute types (OBJ_nid2sn),
// which X509_NAME_print_ex prints with XN_FLAG_FN_SN.
var shortNames = map[string]string{
	"2.5.4.3":                    "CN",
	"2.5.4.4":                    "SN",
	"2.5.4.5":                    "serialNumber",
	"2.5.4.6":                    "C",
	"2.5.4.7":                    "L",
	"2.5.4.8":                    "ST",
	"2.5.4.9":                    "street",
	"2.5.4.10":                   "O",
	"2.5.4.11":                   "OU",
	"2.5.4.12":                   "title",
	"2.5.4.13":                   "description",
	"2.5.4.15":                   "businessCategory",
	"2.5.4.17":                   "postalCode",
	"2.5.4.41":                   "name",
	"2.5.4.42":                   "GN",
	"2.5.4.43":                   "initials",
	"2.5.4.44":                   "generationQualifier",
	"2.5.4.46":                   "dnQualifier",
	"2.5.4.65":                   "pseudonym",
	"1.2.840.113549.1.9.1":       "emailAddress",
	"0.9.2342.19200300.100.1.1":  "UID",
	"0.9.2342.19200300.100.1.25": "DC",
}

// subjectRFC2253 formats a DER Name as Envoy's subjectPeerCertificate:
// BoringSSL's X509_NAME_print_ex with XN_FLAG_RFC2253 — RDNs last to
// first, "," between them and "+" inside one, short names, values
// converted to UTF-8 with ,+<>;\" escaped, a leading space or # and a
// trailing space escaped, control and non-ASCII bytes as \XX; an
// attribute type without a short name as its OID with the value as
// #<hex of its DER>.
func subjectRFC2253(raw []byte) string {
	var rdns []rdnSET
	if rest, err := asn1.Unmarshal(raw, &rdns); err != nil || len(rest) > 0 {
		return ""
	}
	var b strings.Builder
	for i := len(rdns) - 1; i >= 0; i-- {
		if i != len(rdns)-1 {
			b.WriteByte(',')
		}
		for j, av := range rdns[i] {
			if j > 0 {
				b.WriteByte('+')
			}
			oid := av.Type.String()
			name, known := shortNames[oid]
			if !known {
				b.WriteString(oid)
				b.WriteByte('=')
				writeHexDump(&b, av.Value.FullBytes)
				continue
			}
			b.WriteString(name)
			b.WriteByte('=')
			s, ok := decodeDirectoryString(av.Value)
			if !ok {
				writeHexDump(&b, av.Value.FullBytes)
				continue
			}
			writeEscaped2253(&b, s)
		}
	}
	return b.String()
}

// writeHexDump writes #<uppercase hex>, OpenSSL's dump of a value.
func writeHexDump(b *strings.Builder, der []byte) {
	const digits = "0123456789ABCDEF"
	b.WriteByte('#')
	for _, c := range der {
		b.WriteByte(digits[c>>4])
		b.WriteByte(digits[c&0xf])
	}
}

// decodeDirectoryString returns a string attribute's value as UTF-8.
func decodeDirectoryString(v asn1.RawValue) (string, bool) {
	if v.Class != asn1.ClassUniversal {
		return "", false
	}
	switch v.Tag {
	case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, 26 /* VisibleString */, 18 /* NumericString */ :
		return string(v.Bytes), true
	case asn1.TagT61String:
		// Latin-1, as OpenSSL reads it.
		var b strings.Builder
		for _, c := range v.Bytes {
			b.WriteRune(rune(c))
		}
		return b.String(), true
	case asn1.TagBMPString:
		if len(v.Bytes)%2 != 0 {
			return "", false
		}
		var b strings.Builder
		for i := 0; i < len(v.Bytes); i += 2 {
			b.WriteRune(rune(v.Bytes[i])<<8 | rune(v.Bytes[i+1]))
		}
		return b.String(), true
	case 28: // UniversalString
		if len(v.Bytes)%4 != 0 {
			return "", false
		}
		var b strings.Builder
		for i := 0; i < len(v.Bytes); i += 4 {
			b.WriteRune(rune(v.Bytes[i])<<24 | rune(v.Bytes[i+1])<<16 | rune(v.Bytes[i+2])<<8 | rune(v.Bytes[i+3]))
		}
		return b.String(), true
	}
	return "", false
}

// writeEscaped2253 writes s escaped as BoringSSL's do_esc_char with
// ASN1_STRFLGS_RFC2253 (ESC_2253 | ESC_CTRL | ESC_MSB | UTF8_CONVERT).
func writeEscaped2253(b *strings.Builder, s string) {
	const digits = "0123456789ABCDEF"
	last := len(s) - 1
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c > 0x7f, c < 0x20, c == 0x7f:
			b.WriteByte('\\')
			b.WriteByte(digits[c>>4])
			b.WriteByte(digits[c&0xf])
		case c == '\\', c == '"', c == ',', c == '+', c == '<', c == '>', c == ';',
			i == 0 && (c == ' ' || c == '#'),
			i == last && c == ' ':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
}
