package jwtauthn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/router"
	"github.com/herald-proxy/herald/internal/stats"
)

// keySet is a parsed JWKS. Immutable.
type keySet struct {
	keys []key
}

// key is one usable key of a JWKS.
type key struct {
	kid, alg string
	key      any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte
}

// fits reports whether the key's type can verify alg (jwt_verify_lib picks
// keys by kty: RSA for RS*/PS*, EC for ES*, oct for HS*, OKP for EdDSA).
func (k *key) fits(alg jose.SignatureAlgorithm) bool {
	switch k.key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(string(alg), "RS") || strings.HasPrefix(string(alg), "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(string(alg), "ES")
	case []byte:
		return strings.HasPrefix(string(alg), "HS")
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// parseJWKS is jwt_verify_lib's Jwks::createFrom for the JWKS JSON form:
// keys go-jose cannot use (unknown kty, bad parameters, private parts
// only) are skipped; a JWKS without any usable key is
// JwksNoValidKeys. The PEM form is not supported.
func parseJWKS(data []byte) (*keySet, status) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, statusJwksParseError
	}
	raw, ok := doc["keys"]
	if !ok {
		return nil, statusJwksNoKeys
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, statusJwksBadKeys
	}
	ks := &keySet{}
	for _, r := range list {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(r); err != nil {
			continue
		}
		k := key{kid: jwk.KeyID, alg: jwk.Algorithm}
		switch pk := jwk.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey, []byte:
			k.key = pk
		case *rsa.PrivateKey:
			k.key = &pk.PublicKey
		case *ecdsa.PrivateKey:
			k.key = &pk.PublicKey
		case ed25519.PrivateKey:
			k.key = pk.Public()
		default:
			continue
		}
		ks.keys = append(ks.keys, k)
	}
	if len(ks.keys) == 0 {
		return nil, statusJwksNoValidKeys
	}
	return ks, statusOK
}

// remoteJwks fetches a provider's JWKS through a cluster and caches it for
// cache_duration, shared by every stream of the filter config (Envoy keeps
// one cache per worker thread; herald one per config). The cache is read
// without a lock; a fetch is shared by the streams that need it at the
// same time.
type remoteJwks struct {
	client  *router.AsyncClient
	scheme  string
	path    string
	host    string
	ttl     time.Duration
	timeout time.Duration

	fetchSuccess, fetchFailed *stats.Counter

	cached atomic.Pointer[cachedKeys]

	mu       sync.Mutex
	inflight *fetchCall
}

// cachedKeys is a fetched JWKS and when it expires.
type cachedKeys struct {
	keys    *keySet
	expires time.Time
}

// fetchCall is one fetch that several streams wait on.
type fetchCall struct {
	done chan struct{}
	keys *keySet
}

// parseURI splits http_uri.uri into what the fetch sends.
func parseURI(uri string) (scheme, host, path string, err error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", "", "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", "", fmt.Errorf("%q is not an http or https URL", uri)
	}
	return u.Scheme, u.Host, u.RequestURI(), nil
}

// get returns the cached JWKS, fetching it when there is none or it
// expired; nil when the fetch failed (Envoy: JwksFetchFail, counted in
// jwks_fetch_failed; a failure is not cached).
func (r *remoteJwks) get(ctx context.Context, now time.Time) *keySet {
	if c := r.cached.Load(); c != nil && now.Before(c.expires) {
		return c.keys
	}
	r.mu.Lock()
	if c := r.cached.Load(); c != nil && now.Before(c.expires) {
		r.mu.Unlock()
		return c.keys
	}
	if call := r.inflight; call != nil {
		r.mu.Unlock()
		select {
		case <-call.done:
			return call.keys
		case <-ctx.Done():
			return nil
		}
	}
	call := &fetchCall{done: make(chan struct{})}
	r.inflight = call
	r.mu.Unlock()

	// The fetch outlives a caller that goes away: others may wait on it.
	// The async client's timeout (http_uri.timeout) bounds it.
	call.keys = r.fetch(context.WithoutCancel(ctx))
	if call.keys != nil {
		r.fetchSuccess.Inc()
		r.cached.Store(&cachedKeys{keys: call.keys, expires: now.Add(r.ttl)})
	} else {
		r.fetchFailed.Inc()
	}
	r.mu.Lock()
	r.inflight = nil
	r.mu.Unlock()
	close(call.done)
	return call.keys
}

// fetch is Envoy's JwksFetcher: a GET of the URI; a status other than 200
// or a body that is not a usable JWKS is a failure.
func (r *remoteJwks) fetch(ctx context.Context) *keySet {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	h.Add(hhttp.Scheme, r.scheme)
	h.Add(hhttp.Path, r.path)
	h.Add(hhttp.Authority, r.host)
	resp, err := r.client.Send(ctx, h, nil, 0)
	if err != nil || resp.Status() != 200 || resp.Truncated {
		return nil
	}
	ks, st := parseJWKS(resp.Body)
	if st != statusOK {
		return nil
	}
	return ks
}
