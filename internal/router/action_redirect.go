package router

import (
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/matcher"
)

// redirectAction is a compiled RedirectAction.
type redirectAction struct {
	scheme        string // scheme_redirect, "https" for https_redirect, or "" (keep)
	host          string
	port          string // ":8443" or ""
	path          string
	pathHasQuery  bool
	prefixRewrite string
	regex         *regexp.Regexp
	regexSubst    string
	stripQuery    bool
}

func (b *builder) buildRedirect(r *Route, ra *routev3.RedirectAction, p string) {
	checkUnsupported(ra, p, &b.errs)
	rd := &redirectAction{host: ra.GetHostRedirect(), stripQuery: ra.GetStripQuery()}
	switch s := ra.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			rd.scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		rd.scheme = s.SchemeRedirect
	}
	if ra.GetPortRedirect() != 0 {
		rd.port = ":" + strconv.FormatUint(uint64(ra.GetPortRedirect()), 10)
	}
	switch s := ra.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		rd.path = s.PathRedirect
		rd.pathHasQuery = strings.Contains(s.PathRedirect, "?")
	case *routev3.RedirectAction_PrefixRewrite:
		rd.prefixRewrite = s.PrefixRewrite
	case *routev3.RedirectAction_RegexRewrite:
		re, sub, err := matcher.CompileRewrite(s.RegexRewrite)
		if err != nil {
			b.errs = append(b.errs, configerr.At(p+".regex_rewrite", "%v", err))
		}
		rd.regex, rd.regexSubst = re, sub
	}
	switch ra.GetResponseCode() {
	case routev3.RedirectAction_FOUND:
		r.status = 302
	case routev3.RedirectAction_SEE_OTHER:
		r.status = 303
	case routev3.RedirectAction_TEMPORARY_REDIRECT:
		r.status = 307
	case routev3.RedirectAction_PERMANENT_REDIRECT:
		r.status = 308
	default:
		r.status = 301 // MOVED_PERMANENTLY, the default
	}
	r.redirect = rd
}

// RedirectLocation returns the Location of a redirect route, built as
// Envoy's RouteEntryImplBase::newUri (router/config_impl.cc):
//
//   - scheme: scheme_redirect, "https" for https_redirect, else :scheme;
//   - host: host_redirect, else :authority, dropping its port when
//     port_redirect is set or when the scheme changes away from the one in
//     x-forwarded-proto and the port is that scheme's default (":80" for
//     http, ":443" for https); then ":"+port_redirect when set;
//   - path: path_redirect (keeping the request's query unless path_redirect
//     has its own), else :path after prefix_rewrite/regex_rewrite; a missing
//     leading '/' is added; strip_query drops the query unless it came from
//     path_redirect.
//
// For a direct_response route it returns the request's own URL when the
// status is 201 or 3xx (Envoy adds that Location then), else "". It returns
// "" for other routes and requests without :path. The forwarding engine
// must have set x-forwarded-proto, as Envoy's connection manager does.
func (r *Route) RedirectLocation(h *hhttp.Headers) string {
	p, ok := h.Lookup(hhttp.Path)
	if !ok {
		return ""
	}
	switch r.kind {
	case ActionRedirect:
	case ActionDirectResponse:
		if r.status != 201 && (r.status < 300 || r.status > 399) {
			return ""
		}
	default:
		return ""
	}
	rd := r.redirect
	if rd == nil {
		rd = &redirectAction{}
	}
	scheme := rd.scheme
	if scheme == "" {
		scheme = h.Scheme()
	}
	host := rd.host
	if host == "" {
		host = processRequestHost(h, scheme, rd.port)
	}
	var path string
	switch {
	case rd.path != "":
		path = rd.path
		if !rd.pathHasQuery {
			if q := strings.IndexByte(p, '?'); q >= 0 {
				path += p[q:]
			}
		}
	case rd.prefixRewrite != "":
		path, _ = r.replaceMatched(p, rd.prefixRewrite)
	case rd.regex != nil:
		just := stripQueryAndFragment(p)
		// Envoy: an empty result means no rewrite.
		if nj := rd.regex.ReplaceAllString(just, rd.regexSubst); nj != "" {
			path = nj + p[len(just):]
		} else {
			path = p
		}
	default:
		path = p
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if !rd.pathHasQuery && rd.stripQuery {
		if q := strings.IndexByte(path, '?'); q >= 0 {
			path = path[:q]
		}
	}
	return scheme + "://" + host + rd.port + path
}

// processRequestHost is Envoy's RouteEntryImplBase::processRequestHost.
func processRequestHost(h *hhttp.Headers, newScheme, newPort string) string {
	host := h.Authority()
	if host == "" {
		return host
	}
	var end int
	if host[0] == '[' {
		end = strings.LastIndex(host, "]:")
		if end >= 0 {
			end++
		}
	} else {
		end = strings.LastIndexByte(host, ':')
	}
	if end < 0 {
		return host
	}
	port := host[end:]
	proto := h.Get("x-forwarded-proto")
	remove := newPort != ""
	if newScheme != proto {
		remove = remove || (proto == "https" && port == ":443") || (proto == "http" && port == ":80")
	}
	if remove {
		return host[:end]
	}
	return host
}
