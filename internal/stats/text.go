package stats

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Stat types accepted by TextOptions.Type (Envoy's /stats?type=).
const (
	TypeAll        = "All"
	TypeCounters   = "Counters"
	TypeGauges     = "Gauges"
	TypeHistograms = "Histograms"
)

// TextOptions are the query parameters of Envoy's /stats
// (https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--stats).
type TextOptions struct {
	// Filter (filter=) keeps stats whose full name matches (a search, not a
	// full match, as Envoy); nil keeps all.
	Filter *regexp.Regexp
	// UsedOnly (usedonly) keeps counters added to, gauges changed and
	// histograms recorded into at least once.
	UsedOnly bool
	// Type (type=) is TypeAll, TypeCounters, TypeGauges or TypeHistograms;
	// "" means TypeAll.
	Type string
}

func (o TextOptions) wants() (counters, gauges, histograms bool, err error) {
	switch o.Type {
	case "", TypeAll:
		return true, true, true, nil
	case TypeCounters:
		return true, false, false, nil
	case TypeGauges:
		return false, true, false, nil
	case TypeHistograms:
		return false, false, true, nil
	}
	return false, false, false, fmt.Errorf("stats: invalid type %q (want %s, %s, %s or %s)", o.Type, TypeCounters, TypeGauges, TypeHistograms, TypeAll)
}

// numericStat is one counter or gauge line of /stats.
type numericStat struct {
	name     string
	value    uint64
	negative bool // gauge below zero; value holds the magnitude
}

func (s *Store) numericStats(opts TextOptions, wantCounters, wantGauges bool) []numericStat {
	var out []numericStat
	if wantCounters {
		for _, c := range filterStats(s.unsortedCounters(), opts.Filter, opts.UsedOnly) {
			out = append(out, numericStat{name: c.name, value: c.Value()})
		}
	}
	if wantGauges {
		for _, g := range filterStats(s.unsortedGauges(), opts.Filter, opts.UsedOnly) {
			v := g.Value()
			if v < 0 {
				out = append(out, numericStat{name: g.name, value: uint64(-v), negative: true})
			} else {
				out = append(out, numericStat{name: g.name, value: uint64(v)})
			}
		}
	}
	// Envoy merges counters and gauges into one map ordered by name.
	slices.SortFunc(out, func(a, b numericStat) int { return strings.Compare(a.name, b.name) })
	return out
}

// WriteText writes Envoy's plain-text /stats: "name: value" for counters and
// gauges together in name order, then histograms in name order as
// "name: P0(interval,cumulative) P25(…) … P100(…)", or
// "name: No recorded values" for a histogram never recorded into.
// See Histogram.Quantiles for how herald's quantiles differ from Envoy's.
// An unknown opts.Type is an error and nothing is written.
func WriteText(w io.Writer, s *Store, opts TextOptions) error {
	wantC, wantG, wantH, err := opts.wants()
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	var scratch []byte
	for _, st := range s.numericStats(opts, wantC, wantG) {
		scratch = append(scratch[:0], st.name...)
		scratch = append(scratch, ": "...)
		if st.negative {
			scratch = append(scratch, '-')
		}
		scratch = strconv.AppendUint(scratch, st.value, 10)
		scratch = append(scratch, '\n')
		bw.Write(scratch)
	}
	if wantH {
		for _, h := range filterStats(s.Histograms(), opts.Filter, opts.UsedOnly) {
			scratch = append(scratch[:0], h.name...)
			scratch = append(scratch, ": "...)
			if !h.Used() {
				scratch = append(scratch, "No recorded values"...)
			} else {
				interval, cumulative := h.Quantiles()
				for i := range SupportedQuantiles {
					if i > 0 {
						scratch = append(scratch, ' ')
					}
					scratch = append(scratch, quantileLabels[i]...)
					scratch = append(scratch, '(')
					scratch = appendEnvoyDouble(scratch, interval[i])
					scratch = append(scratch, ',')
					scratch = appendEnvoyDouble(scratch, cumulative[i])
					scratch = append(scratch, ')')
				}
			}
			scratch = append(scratch, '\n')
			bw.Write(scratch)
		}
	}
	return bw.Flush()
}

// quantileLabels are Envoy's "P{:g}" spellings of 100*SupportedQuantiles.
var quantileLabels = []string{"P0", "P25", "P50", "P75", "P90", "P95", "P99", "P99.5", "P99.9", "P100"}

// supportedPercentilesJSON is 100*SupportedQuantiles as Envoy's JSON prints them.
const supportedPercentilesJSON = "[0,25,50,75,90,95,99,99.5,99.9,100]"

// appendEnvoyDouble formats v as fmt's "{}" does for a double in Envoy:
// shortest round-trip digits, fixed notation unless the decimal exponent is
// below -4 or at least 16, and "nan" for NaN.
func appendEnvoyDouble(b []byte, v float64) []byte {
	switch {
	case math.IsNaN(v):
		return append(b, "nan"...)
	case math.IsInf(v, 1):
		return append(b, "inf"...)
	case math.IsInf(v, -1):
		return append(b, "-inf"...)
	}
	if v != 0 {
		exp := math.Floor(math.Log10(math.Abs(v)))
		if exp < -4 || exp >= 16 {
			return strconv.AppendFloat(b, v, 'e', -1, 64)
		}
	}
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// WriteJSON writes Envoy's /stats?format=json:
//
//	{"stats":[{"name":"c","value":1},…,{"histograms":{"supported_quantiles":[0,25,…,100],
//	  "computed_quantiles":[{"name":"h","values":[{"cumulative":1,"interval":null},…]}]}}]}
//
// Counters and gauges come in name order; the histograms entry is present
// only when at least one histogram is shown; a quantile without samples is
// null (Envoy's StatsJsonRender / statsAsJson).
func WriteJSON(w io.Writer, s *Store, opts TextOptions) error {
	wantC, wantG, wantH, err := opts.wants()
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	b := make([]byte, 0, 256)
	b = append(b, `{"stats":[`...)
	first := true
	for _, st := range s.numericStats(opts, wantC, wantG) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, `{"name":`...)
		b = appendJSONString(b, st.name)
		b = append(b, `,"value":`...)
		if st.negative {
			b = append(b, '-')
		}
		b = strconv.AppendUint(b, st.value, 10)
		b = append(b, '}')
		bw.Write(b)
		b = b[:0]
	}
	var hists []*Histogram
	if wantH {
		hists = filterStats(s.Histograms(), opts.Filter, opts.UsedOnly)
	}
	if len(hists) > 0 {
		if !first {
			b = append(b, ',')
		}
		b = append(b, `{"histograms":{"supported_quantiles":`...)
		b = append(b, supportedPercentilesJSON...)
		b = append(b, `,"computed_quantiles":[`...)
		for i, h := range hists {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendJSONString(b, h.name)
			b = append(b, `,"values":[`...)
			interval, cumulative := h.Quantiles()
			for q := range SupportedQuantiles {
				if q > 0 {
					b = append(b, ',')
				}
				b = append(b, `{"cumulative":`...)
				b = appendJSONNumber(b, cumulative[q])
				b = append(b, `,"interval":`...)
				b = appendJSONNumber(b, interval[q])
				b = append(b, '}')
			}
			b = append(b, "]}"...)
			bw.Write(b)
			b = b[:0]
		}
		b = append(b, "]}}"...)
	}
	b = append(b, "]}"...)
	bw.Write(b)
	return bw.Flush()
}

func appendJSONNumber(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendJSONString appends s as a JSON string; bytes that are not valid
// UTF-8 are passed through (stat names are ASCII in practice).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
