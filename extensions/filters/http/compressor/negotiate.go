package compressor

import (
	"strconv"
	"strings"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// headerStat is which accept-encoding stat a decision counts
// (EncodingDecision::HeaderStat).
type headerStat int

const (
	statNotValid headerStat = iota
	statIdentity
	statWildcard
	statValidCompressor
)

// decision is the encoding chosen for a response.
type decision struct {
	encoding string
	stat     headerStat
}

// acceptEncodingAllowed is isAcceptEncodingAllowed: maybe is false when the
// response cannot be compressed whatever the client accepts (then no stat
// is counted); the first compressor filter to ask decides for the chain.
func (f *Filter) acceptEncodingAllowed(maybe bool, h *hhttp.Headers) bool {
	if !maybe {
		return false
	}
	if !f.hasAccept {
		f.cfg.rstats.noAcceptHeader.Inc()
		return false
	}
	if !f.chain.decided {
		f.chain.decision = chooseEncoding(f.chain.configs, f.acceptEncoding, h.Get("content-type"))
		f.chain.decided = true
	}
	return f.shouldCompress(f.chain.decision)
}

// shouldCompress reports whether this filter's encoding was chosen and
// counts the header_* stat.
func (f *Filter) shouldCompress(d decision) bool {
	use := strings.EqualFold(f.cfg.encoding, d.encoding)
	s := &f.cfg.rstats
	switch d.stat {
	case statValidCompressor:
		if use {
			s.headerCompressorUsed.Inc()
		} else {
			// Another compressor filter of the chain compresses.
			s.headerCompressorOvershadowed.Inc()
		}
	case statIdentity:
		s.headerIdentity.Inc()
	case statWildcard:
		s.headerWildcard.Inc()
	default:
		s.headerNotValid.Inc()
	}
	return use
}

// allowed is a compressor of the chain that may encode the response.
type allowed struct {
	encoding    string
	order       int
	chooseFirst bool
	excluded    bool // q=0
}

// chooseEncoding is Envoy's CompressorFilter::chooseEncoding: the
// encodings the chain's compressors can produce for this content type,
// intersected with accept-encoding, the highest q-value winning; a tie
// goes to a compressor with choose_first (the last such in the chain) and
// "*" picks the first compressor registered. "identity" is always
// acceptable.
func chooseEncoding(configs []*Config, accept, contentType string) decision {
	ct := ""
	if contentType != "" {
		ct = mediaType(contentType)
	}
	var comps [4]allowed
	list := comps[:0]
	for _, c := range configs {
		if ct != "" && len(c.response.contentTypes) > 0 {
			if _, ok := c.response.contentTypes[ct]; !ok {
				continue
			}
		}
		// Filters for an encoding already listed are ignored: the first
		// registered wins.
		dup := false
		for _, a := range list {
			if a.encoding == c.encoding {
				dup = true
				break
			}
		}
		if !dup {
			list = append(list, allowed{encoding: c.encoding, order: len(list), chooseFirst: c.chooseFirst})
		}
	}
	find := func(enc string) *allowed {
		for i := range list {
			if list[i].encoding == enc && !list[i].excluded {
				return &list[i]
			}
		}
		return nil
	}

	type pair struct {
		enc string
		q   float64
	}
	var pairsBuf [8]pair
	pairs := pairsBuf[:0]
	for rest := accept; rest != ""; {
		var tok string
		tok, rest, _ = strings.Cut(rest, ",")
		if strings.TrimSpace(tok) == "" {
			continue
		}
		name, params, hasParams := strings.Cut(tok, ";")
		p := pair{enc: strings.TrimSpace(name), q: 1}
		if hasParams {
			if k, v, ok := strings.Cut(params, "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				q, err := strconv.ParseFloat(strings.TrimSpace(v), 32)
				if err != nil {
					// Envoy: "Skip not parseable q-value."
					continue
				}
				p.q = q
			}
		}
		pairs = append(pairs, p)
		if p.q == 0 {
			// "Disallow compressors with q=0" (kept in pairs: "*" must
			// not bring them back).
			if a := find(p.enc); a != nil {
				a.excluded = true
			}
		}
	}
	remaining := 0
	for _, a := range list {
		if !a.excluded {
			remaining++
		}
	}
	if len(pairs) == 0 || remaining == 0 {
		return decision{encoding: "identity", stat: statNotValid}
	}
	choice := pair{enc: "identity"}
	for _, p := range pairs {
		a := find(p.enc)
		if a == nil && p.enc != "identity" && p.enc != "*" {
			continue
		}
		if p.q > choice.q || (p.q == choice.q && a != nil && a.chooseFirst) {
			choice = p
		}
	}
	switch {
	case choice.q == 0:
		// "The value of Accept-Encoding must be invalid".
		return decision{encoding: "identity", stat: statNotValid}
	case choice.enc == "identity":
		return decision{encoding: "identity", stat: statIdentity}
	case choice.enc == "*":
		for _, a := range list {
			if !a.excluded {
				return decision{encoding: a.encoding, stat: statWildcard}
			}
		}
	}
	return decision{encoding: choice.enc, stat: statValidCompressor}
}
