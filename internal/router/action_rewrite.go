package router

import (
	"strings"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// RewriteHost applies the weighted cluster's host_rewrite_literal (wc may be
// nil), then the route's host_rewrite_literal, host_rewrite_header (its
// first value, when not empty) or host_rewrite_path_regex, appending the old
// :authority to x-forwarded-host when append_x_forwarded_host is set.
// auto_host_rewrite is left to the caller (AutoHostRewrite). It reports
// whether :authority changed.
func (r *Route) RewriteHost(h *hhttp.Headers, wc *WeightedCluster) bool {
	changed := false
	if wc != nil && wc.hostRewrite != "" {
		h.Set(hhttp.Authority, wc.hostRewrite)
		changed = true
	}
	return r.rewriteRouteHost(h) || changed
}

func (r *Route) rewriteRouteHost(h *hhttp.Headers) bool {
	switch {
	case r.kind != ActionCluster:
		return false
	case r.hostLiteral != "":
		r.updateAuthority(h, r.hostLiteral)
	case r.hostHeader != "":
		v := h.Get(r.hostHeader)
		if v == "" {
			return false
		}
		r.updateAuthority(h, v)
	case r.hostPathRegex != nil:
		p := stripQueryAndFragment(h.Path())
		r.updateAuthority(h, r.hostPathRegex.ReplaceAllString(p, r.hostPathSubst))
	default:
		return false
	}
	return true
}

// updateAuthority is Envoy's Http::Utility::updateAuthority with
// append_xfh_idempotent: the old host is appended to x-forwarded-host
// unless it is already its last element.
func (r *Route) updateAuthority(h *hhttp.Headers, host string) {
	if old := h.Authority(); r.appendXFH && old != "" {
		xfh, ok := h.Lookup("x-forwarded-host")
		switch {
		case !ok || xfh == "":
			h.Set("x-forwarded-host", old)
		default:
			last := xfh
			if i := strings.LastIndexByte(xfh, ','); i >= 0 {
				last = xfh[i+1:]
			}
			if last != old {
				h.Set("x-forwarded-host", xfh+","+old)
			}
		}
	}
	h.Set(hhttp.Authority, host)
}

// RewritePath applies prefix_rewrite or regex_rewrite of an ActionCluster
// route to :path (the query is kept), recording the old path in
// x-envoy-original-path when insertOriginalPath. It reports whether :path
// changed. Redirect routes rewrite inside RedirectLocation instead.
func (r *Route) RewritePath(h *hhttp.Headers, insertOriginalPath bool) bool {
	if r.kind != ActionCluster || (r.prefixRewrite == "" && r.regexRewrite == nil) {
		return false
	}
	old, ok := h.Lookup(hhttp.Path)
	if !ok {
		return false
	}
	var np string
	if r.prefixRewrite != "" {
		np, ok = r.replaceMatched(old, r.prefixRewrite)
		if !ok {
			return false
		}
	} else {
		just := stripQueryAndFragment(old)
		np = r.regexRewrite.ReplaceAllString(just, r.regexSubst) + old[len(just):]
	}
	if insertOriginalPath {
		h.Set(headerOriginalPath, old)
	}
	h.Set(hhttp.Path, np)
	return true
}

// replaceMatched replaces the part of p the route matched with rewrite
// (Envoy's currentUrlPathAfterRewriteWithMatchedPath): the prefix or path
// for prefix, path and path_separated_prefix routes, the whole path without
// query for safe_regex routes.
func (r *Route) replaceMatched(p, rewrite string) (string, bool) {
	n := len(r.match.value)
	if r.match.kind == pathRegex {
		n = len(stripQueryAndFragment(p))
	}
	if n > len(p) {
		return p, false
	}
	return rewrite + p[n:], true
}
