package jwtauthn

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// provider is a built JwtProvider. Immutable after Build (its remote JWKS
// cache is safe for concurrent use).
type provider struct {
	name      string
	issuer    string
	audiences audiences
	local     *keySet
	remote    *remoteJwks
	locations []location

	forward              bool
	forwardPayloadHeader string
	padForwardPayload    bool
	payloadInMetadata    string
	headerInMetadata     string
	clearRouteCache      bool
	skew                 uint64
	claimHeaders         []claimHeader
}

// claimHeader is a built JwtClaimToHeader.
type claimHeader struct {
	header string
	path   []string
}

// audiences is jwt_verify_lib's CheckAudience: audiences compared without
// an http:// or https:// scheme and without a trailing slash. Empty allows
// every token.
type audiences []string

func sanitizeAudience(a string) string {
	a = strings.TrimPrefix(a, "http://")
	a = strings.TrimPrefix(a, "https://")
	return strings.TrimSuffix(a, "/")
}

func newAudiences(list []string) audiences {
	out := make(audiences, 0, len(list))
	for _, a := range list {
		out = append(out, sanitizeAudience(a))
	}
	return out
}

// allowed is CheckAudience::areAudiencesAllowed: true when none is
// configured or any of the token's audiences is configured.
func (a audiences) allowed(tok []string) bool {
	if len(a) == 0 {
		return true
	}
	for _, t := range tok {
		if slices.Contains(a, sanitizeAudience(t)) {
			return true
		}
	}
	return false
}

// verifier is one node of a compiled JwtRequirement (Envoy's Verifier).
// Verification runs on the stream goroutine, start to end.
type verifier interface {
	verify(v *verification) status
}

// verification is the state of one request's verification (Envoy's
// ContextImpl).
type verification struct {
	ctx context.Context
	h   *hhttp.Headers
	now time.Time
	// scratch holds the tokens of the authenticator running now.
	scratch []token
	// extracted collects header_in_metadata / payload_in_metadata
	// entries; nil until a provider adds one.
	extracted *structpb.Struct
	// clearRoute is set when a provider with clear_route_cache added a
	// header.
	clearRoute bool
}

// providerVerifier is provider_name and provider_and_audiences.
type providerVerifier struct {
	p   *provider
	ex  *extractor
	aud audiences // provider_and_audiences; empty: the provider's
}

func (pv *providerVerifier) verify(v *verification) status {
	pv.ex.sanitizeHeaders(v.h)
	v.scratch = pv.ex.extract(v.h, v.scratch[:0])
	aud := pv.p.audiences
	if len(pv.aud) > 0 {
		aud = pv.aud
	}
	return v.authenticate(v.scratch, pv.p, aud, false, false)
}

// allowVerifier is allow_missing (failed false) and
// allow_missing_or_failed (failed true): tokens of every provider.
type allowVerifier struct {
	ex     *extractor
	failed bool
}

func (av *allowVerifier) verify(v *verification) status {
	av.ex.sanitizeHeaders(v.h)
	v.scratch = av.ex.extract(v.h, v.scratch[:0])
	return v.authenticate(v.scratch, nil, nil, av.failed, true)
}

// anyVerifier is requires_any (Envoy's AnyVerifierImpl).
type anyVerifier struct {
	children                  []verifier
	allowMissing, allowFailed bool
}

func (a *anyVerifier) verify(v *verification) status {
	final := statusJwtMissed
	for _, c := range a.children {
		st := c.verify(v)
		if st == statusOK {
			return statusOK
		}
		// Envoy: prefer errors other than JwtMissed and
		// JwtUnknownIssuer; JwtUnknownIssuer over JwtMissed.
		if (st != statusJwtMissed && st != statusJwtUnknownIssuer) || final == statusJwtMissed {
			final = st
		}
	}
	if a.allowFailed || a.allowMissing && final == statusJwtMissed {
		return statusOK
	}
	return final
}

// allVerifier is requires_all: the first failure fails it.
type allVerifier struct {
	children []verifier
}

func (a *allVerifier) verify(v *verification) status {
	for _, c := range a.children {
		if st := c.verify(v); st != statusOK {
			return st
		}
	}
	return statusOK
}

// allowAllVerifier is a JwtRequirement with nothing set.
type allowAllVerifier struct{}

func (allowAllVerifier) verify(*verification) status { return statusOK }

// authenticate is Envoy's AuthenticatorImpl: tokens are verified last
// first; unless failures or a missing token are allowed, every token must
// verify (a request with one good and one bad token is refused).
// p is the required provider, nil to check each token against the
// providers of its location.
func (v *verification) authenticate(tokens []token, p *provider, aud audiences, allowFailed, allowMissing bool) status {
	st := statusJwtMissed
	for i := len(tokens) - 1; i >= 0; i-- {
		st = v.verifyToken(&tokens[i], p, aud)
		if st != statusOK && !allowFailed && !allowMissing {
			break
		}
	}
	switch {
	case allowFailed:
		return statusOK
	case allowMissing && st == statusJwtMissed:
		return statusOK
	}
	return st
}

// verifyToken is AuthenticatorImpl::startVerify and handleGoodJwt for one
// token. Without a required provider p, the token's provider and its
// audiences are found by the token's issuer.
func (v *verification) verifyToken(tok *token, p *provider, aud audiences) status {
	t, st := parseJWT(tok.value)
	if st != statusOK {
		return st
	}
	if p == nil {
		if p = tok.loc.providerFor(t.iss); p == nil {
			return statusJwtUnknownIssuer
		}
		aud = p.audiences
	} else if p.issuer != "" && t.iss != p.issuer {
		return statusJwtUnknownIssuer
	}
	if st := t.checkTime(uint64(max(v.now.Unix(), 0)), p.skew); st != statusOK {
		return st
	}
	if !aud.allowed(t.audiences) {
		return statusJwtAudienceNotAllowed
	}
	keys := p.local
	if keys == nil {
		if keys = p.remote.get(v.ctx, v.now); keys == nil {
			return statusJwksFetchFail
		}
	}
	if st := t.verifySignature(keys); st != statusOK {
		return st
	}
	v.goodJWT(t, tok, p)
	return statusOK
}

// goodJWT is Envoy's handleGoodJwt: forward the payload, copy claims to
// headers, remove the token unless forward, record metadata.
func (v *verification) goodJWT(t *jwt, tok *token, p *provider) {
	added := false
	if p.forwardPayloadHeader != "" {
		payload := t.payloadB64
		if p.padForwardPayload {
			if n := len(payload) % 4; n != 0 {
				payload += "==="[:4-n]
			}
		}
		v.h.Add(p.forwardPayloadHeader, payload)
		added = true
	}
	for _, ch := range p.claimHeaders {
		if s := claimString(t.claim(ch.path)); s != "" {
			v.h.Add(ch.header, s)
			added = true
		}
	}
	if !p.forward {
		switch tok.loc.kind {
		case fromHeader:
			v.h.Del(tok.loc.name)
		case fromParam:
			v.h.Set(hhttp.Path, removeQueryParam(v.h.Path(), tok.loc.name))
		case fromCookie:
			// Envoy: forward has no effect on cookies.
		}
	}
	if p.headerInMetadata != "" {
		v.addExtracted(p.headerInMetadata, t.header)
	}
	if p.payloadInMetadata != "" {
		v.addExtracted(p.payloadInMetadata, t.payload)
	}
	if p.clearRouteCache && added {
		v.clearRoute = true
	}
}

func (v *verification) addExtracted(name string, m map[string]any) {
	s, err := structpb.NewStruct(m)
	if err != nil {
		return
	}
	if v.extracted == nil {
		v.extracted = &structpb.Struct{Fields: make(map[string]*structpb.Value, 1)}
	}
	v.extracted.Fields[name] = structpb.NewStructValue(s)
}

// claimString is Envoy's addJWTClaimToHeader conversion: strings as they
// are, integral numbers without a fraction, other numbers as C++'s
// std::to_string (six decimals), booleans "true"/"false"; other kinds are
// not copied ("").
func claimString(c any) string {
	switch x := c.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		if x >= 0 && x < 1<<64 && x == float64(uint64(x)) {
			return strconv.FormatUint(uint64(x), 10)
		}
		return strconv.FormatFloat(x, 'f', 6, 64)
	}
	return ""
}
