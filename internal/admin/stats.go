package admin

import (
	"bytes"
	nethttp "net/http"
	"net/url"
	"regexp"
	"slices"

	"github.com/herald-proxy/herald/internal/stats"
)

// statTypes are Envoy's ?type= labels (source/server/admin/stats_params.h).
var statTypes = []string{"All", "Counters", "Histograms", "Gauges", "TextReadouts"}

// statsParams is Envoy's StatsParams, limited to what herald renders.
type statsParams struct {
	filter   *regexp.Regexp
	usedOnly bool
	typ      string // "" for All, else one of statTypes
	format   string // "text", "json" or "prometheus"
}

// parseStatsParams is Envoy's StatsParams::parse. On a bad parameter it
// returns Envoy's message for a 400 body.
func parseStatsParams(q url.Values) (statsParams, string) {
	p := statsParams{usedOnly: has(q, "usedonly"), format: "text"}
	if vs, ok := q["filter"]; ok && len(vs) > 0 {
		// Go's regexp is RE2 syntax, as Envoy's re2 filter.
		re, err := regexp.Compile(vs[0])
		if err != nil {
			return p, "Invalid re2 regex"
		}
		p.filter = re
	}
	if vs, ok := q["type"]; ok && len(vs) > 0 {
		if !slices.Contains(statTypes, vs[0]) {
			return p, "invalid &type= param"
		}
		if vs[0] != "All" {
			p.typ = vs[0]
		}
	}
	switch f := formatParam(q); f {
	case "", "text":
	case "json", "prometheus":
		p.format = f
	case "html", "active-html":
		// Envoy built with --define=admin_html=disabled answers the same way.
		return p, "HTML output is not supported by herald; see /dashboard"
	default:
		return p, "usage: /stats?format=(html|active-html|json|prometheus|text)\n\n"
	}
	return p, ""
}

// serveStats is Envoy's /stats: text by default, ?format=json or
// ?format=prometheus, filtered by ?filter=, ?usedonly and ?type=.
func (a *Admin) serveStats(w nethttp.ResponseWriter, r *nethttp.Request) {
	p, msg := parseStatsParams(r.URL.Query())
	if msg != "" {
		writeText(w, nethttp.StatusBadRequest, msg)
		return
	}
	if p.format == "prometheus" {
		a.writePrometheus(w, p)
		return
	}
	ct := contentTypeText
	if p.format == "json" {
		ct = contentTypeJSON
	}
	if p.typ == "TextReadouts" {
		// herald has no text readouts, so the selection is empty.
		body := ""
		if p.format == "json" {
			body = `{"stats":[]}`
		}
		writeBody(w, nethttp.StatusOK, ct, []byte(body))
		return
	}
	var buf bytes.Buffer
	opts := stats.TextOptions{Filter: p.filter, UsedOnly: p.usedOnly, Type: p.typ}
	var err error
	if p.format == "json" {
		err = stats.WriteJSON(&buf, a.src.Stats(), opts)
	} else {
		err = stats.WriteText(&buf, a.src.Stats(), opts)
	}
	if err != nil {
		a.log.Error("admin: stats", "error", err)
		writeText(w, nethttp.StatusInternalServerError, "admin: stats: "+err.Error()+"\n")
		return
	}
	writeBody(w, nethttp.StatusOK, ct, buf.Bytes())
}

// servePrometheus is Envoy's /stats/prometheus (StatsHandler::prometheusStats).
func (a *Admin) servePrometheus(w nethttp.ResponseWriter, r *nethttp.Request) {
	p, msg := parseStatsParams(r.URL.Query())
	if msg != "" {
		writeText(w, nethttp.StatusBadRequest, msg)
		return
	}
	a.writePrometheus(w, p)
}

func (a *Admin) writePrometheus(w nethttp.ResponseWriter, p statsParams) {
	var buf bytes.Buffer
	if err := stats.WritePrometheus(&buf, a.src.Stats(), stats.PromOptions{Filter: p.filter, UsedOnly: p.usedOnly}); err != nil {
		a.log.Error("admin: prometheus stats", "error", err)
		writeText(w, nethttp.StatusInternalServerError, "admin: prometheus stats: "+err.Error()+"\n")
		return
	}
	writeBody(w, nethttp.StatusOK, contentTypePrometheus, buf.Bytes())
}
