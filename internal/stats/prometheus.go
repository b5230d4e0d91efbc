package stats

import (
	"bufio"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// PromOptions are the query parameters of Envoy's /stats/prometheus
// (https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--stats-prometheus).
type PromOptions struct {
	// Filter (filter=) keeps stats whose full name matches; nil keeps all.
	Filter *regexp.Regexp
	// UsedOnly (usedonly) keeps stats that were ever updated.
	UsedOnly bool
}

// WritePrometheus writes the store in Envoy's Prometheus text exposition
// (v0.0.4) as Envoy's PrometheusStatsFormatter does
// (source/server/admin/prometheus_stats.cc):
//
//   - counters, then gauges, then histograms;
//   - within a type, one family per tag-extracted name, families sorted by
//     name, each "# TYPE envoy_<name> <type>" followed by its series sorted
//     by full stat name, then an empty line;
//   - series always carry braces, even without tags: envoy_server_live{} 1;
//   - histograms as _bucket{…,le="<bound>"} with DefaultBuckets, a +Inf
//     bucket, _sum and _count, from all samples since start.
//
// It does not use prometheus/common/expfmt to encode because expfmt cannot
// reproduce Envoy's bytes: it drops empty braces, prints bucket bounds in Go's
// shortest form (3.6e+06 where Envoy prints 3600000) and has no empty line
// between families. The output is still valid exposition (the tests parse it
// back with expfmt).
//
// Differences from Envoy: label values are escaped (\\, \", \n) as the
// exposition format requires, where Envoy writes them raw; text readouts,
// custom stat namespaces and histogram_emit_mode=summary are not supported.
func WritePrometheus(w io.Writer, s *Store, opts PromOptions) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	p := promWriter{w: bw}

	counters := filterStats(s.unsortedCounters(), opts.Filter, opts.UsedOnly)
	sortForPrometheus(counters)
	p.families(len(counters), func(i int) *metricMeta { return &counters[i].metricMeta }, "counter",
		func(i int) {
			p.numeric(&counters[i].metricMeta, strconv.AppendUint(p.scratch[:0], counters[i].Value(), 10))
		})

	gauges := filterStats(s.unsortedGauges(), opts.Filter, opts.UsedOnly)
	sortForPrometheus(gauges)
	p.families(len(gauges), func(i int) *metricMeta { return &gauges[i].metricMeta }, "gauge",
		func(i int) { p.numeric(&gauges[i].metricMeta, strconv.AppendInt(p.scratch[:0], gauges[i].Value(), 10)) })

	hists := filterStats(s.unsortedHistograms(), opts.Filter, opts.UsedOnly)
	sortForPrometheus(hists)
	p.families(len(hists), func(i int) *metricMeta { return &hists[i].metricMeta }, "histogram",
		func(i int) { p.histogram(hists[i]) })

	return bw.Flush()
}

// stat is what the outputs need of Counter, Gauge and Histogram.
type stat interface {
	*Counter | *Gauge | *Histogram
	Name() string
	TagExtractedName() string
	Used() bool
}

// filterStats keeps the stats shown for filter= and usedonly (Envoy's
// shouldShowMetric: a regex search on the full name). It reuses in.
func filterStats[T stat](in []T, filter *regexp.Regexp, usedOnly bool) []T {
	if filter == nil && !usedOnly {
		return in
	}
	out := in[:0]
	for _, m := range in {
		if usedOnly && !m.Used() {
			continue
		}
		if filter != nil && !filter.MatchString(m.Name()) {
			continue
		}
		out = append(out, m)
	}
	return out
}

// sortForPrometheus orders by tag-extracted name, then full name, both
// compared token by token as Envoy's StatName ordering does.
func sortForPrometheus[T stat](ms []T) {
	slices.SortFunc(ms, func(a, b T) int {
		if c := compareStatNames(a.TagExtractedName(), b.TagExtractedName()); c != 0 {
			return c
		}
		return compareStatNames(a.Name(), b.Name())
	})
}

// compareStatNames compares dot-separated names token by token (Envoy's
// SymbolTable::lessThan), so "a.b" sorts before "a-b" although '-' < '.'.
// Comparing bytes with '.' ranked below every other byte is the same order
// without splitting.
func compareStatNames(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '.' {
			return -1
		}
		if cb == '.' {
			return 1
		}
		if ca < cb {
			return -1
		}
		return 1
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}

// defaultBucketLe holds `le="<bound>"} ` for DefaultBuckets, with the bound
// formatted as Envoy's "{:.32g}" (fixed point for these values), computed
// once because formatting at precision 32 is slow.
var defaultBucketLe = func() []string {
	out := make([]string, len(DefaultBuckets))
	for i, b := range DefaultBuckets {
		out[i] = `le="` + strconv.FormatFloat(b, 'g', 32, 64) + `"} `
	}
	return out
}()

type promWriter struct {
	w       *bufio.Writer
	scratch [64]byte
}

// families writes the n sorted series as families of equal tag-extracted
// name, calling series(i) for each.
func (p *promWriter) families(n int, meta func(int) *metricMeta, typ string, series func(int)) {
	for i := 0; i < n; {
		name := meta(i).tagExtractedName
		p.w.WriteString("# TYPE ")
		p.w.WriteString(meta(i).promName)
		p.w.WriteByte(' ')
		p.w.WriteString(typ)
		p.w.WriteByte('\n')
		for ; i < n && meta(i).tagExtractedName == name; i++ {
			series(i)
		}
		p.w.WriteByte('\n')
	}
}

func (p *promWriter) numeric(m *metricMeta, value []byte) {
	p.w.WriteString(m.promName)
	p.w.WriteByte('{')
	p.w.WriteString(m.promLabels)
	p.w.WriteString("} ")
	p.w.Write(value)
	p.w.WriteByte('\n')
}

func (p *promWriter) histogram(h *Histogram) {
	counts := h.snapshot()
	labels := h.promLabels
	var cum uint64
	for i := range DefaultBuckets {
		cum += counts[i]
		p.w.WriteString(h.promName)
		p.w.WriteString("_bucket{")
		if labels != "" {
			p.w.WriteString(labels)
			p.w.WriteByte(',')
		}
		p.w.WriteString(defaultBucketLe[i])
		p.w.Write(strconv.AppendUint(p.scratch[:0], cum, 10))
		p.w.WriteByte('\n')
	}
	total := cum + counts[len(counts)-1]
	p.w.WriteString(h.promName)
	p.w.WriteString("_bucket{")
	if labels != "" {
		p.w.WriteString(labels)
		p.w.WriteByte(',')
	}
	p.w.WriteString(`le="+Inf"} `)
	p.w.Write(strconv.AppendUint(p.scratch[:0], total, 10))
	p.w.WriteByte('\n')

	p.w.WriteString(h.promName)
	p.w.WriteString("_sum{")
	p.w.WriteString(labels)
	p.w.WriteString("} ")
	// Envoy prints its double sum with "{:.32g}", which for herald's integer
	// sum is the integer itself.
	p.w.Write(strconv.AppendUint(p.scratch[:0], h.Sum(), 10))
	p.w.WriteByte('\n')

	p.w.WriteString(h.promName)
	p.w.WriteString("_count{")
	p.w.WriteString(labels)
	p.w.WriteString("} ")
	p.w.Write(strconv.AppendUint(p.scratch[:0], total, 10))
	p.w.WriteByte('\n')
}

// prometheusName is Envoy's PrometheusStatsFormatter::metricName: "envoy_"
// plus the tag-extracted name with every byte outside [a-zA-Z0-9_] replaced
// by '_'.
func prometheusName(tagExtractedName string) string {
	return "envoy_" + sanitizePrometheus(tagExtractedName)
}

func sanitizePrometheus(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !isAlnum(c) && c != '_' {
			b[i] = '_'
		}
	}
	return string(b)
}

// prometheusLabels is Envoy's formattedTags without the braces:
// name="value" pairs joined by commas, names sanitized like metric names.
func prometheusLabels(tags []Tag) string {
	var b strings.Builder
	for i, t := range tags {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(sanitizePrometheus(t.Name))
		b.WriteString(`="`)
		for j := 0; j < len(t.Value); j++ {
			switch c := t.Value[j]; c {
			case '\\':
				b.WriteString(`\\`)
			case '"':
				b.WriteString(`\"`)
			case '\n':
				b.WriteString(`\n`)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
	}
	return b.String()
}
