package bench

import (
	"fmt"
	"image/color"
	"os"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// ProxyRuns is every round of one proxy in one scenario.
type ProxyRuns struct {
	Proxy string // "direct", "herald", "nginx", "haproxy", "caddy"
	Skip  bool   // the proxy takes no part in the scenario (Applies is false): "—"
	Runs  []Run
}

// Scenario is one load pattern and its results per proxy, in display order.
type Scenario struct {
	Spec
	Load    string // how the load was generated, e.g. "wrk -t1 -c50 -d10s"
	Note    string // optional sentence after the load line
	Results []ProxyRuns
}

// Report is everything BENCHMARKS.md shows.
type Report struct {
	Machine    []string // "key: value" lines about the machine and versions
	Conditions []string // how it was run
	Scenarios  []Scenario
	ChartPath  string // path of the PNG relative to BENCHMARKS.md ("" for none)
}

func (p ProxyRuns) summary(f func(Run) float64) Summary {
	vs := make([]float64, 0, len(p.Runs))
	for _, r := range p.Runs {
		vs = append(vs, f(r))
	}
	return Summarize(vs)
}

// value is the scenario's headline figure of one run: the rate, MiB/s or
// KiB per idle connection.
func (s Scenario) value(r Run) float64 {
	switch s.Kind {
	case KindThroughput:
		return r.MiBPerSec()
	case KindIdle:
		return r.KiBPerConn()
	}
	return r.RPS
}

func (s Scenario) find(proxy string) (ProxyRuns, bool) {
	for _, r := range s.Results {
		if r.Proxy == proxy && !r.Skip && len(r.Runs) > 0 {
			return r, true
		}
	}
	return ProxyRuns{}, false
}

// median is the median headline figure of proxy in s.
func (s Scenario) median(proxy string) (float64, bool) {
	p, ok := s.find(proxy)
	if !ok {
		return 0, false
	}
	return p.summary(s.value).Median, true
}

// ratio formats median(proxy) / median(base), "—" when either is missing or
// they are the same proxy.
func (s Scenario) ratio(proxy, base string) string {
	if proxy == base {
		return "—"
	}
	v, ok1 := s.median(proxy)
	b, ok2 := s.median(base)
	if !ok1 || !ok2 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", v/b)
}

func rangeOf(s Summary, prec int) string {
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, s.Median, prec, s.Min, prec, s.Max)
}

func msOf(f func(Run) time.Duration) func(Run) float64 {
	return func(r Run) float64 { return float64(f(r)) / float64(time.Millisecond) }
}

// TargetResult is one line of the summary against issue #3's targets.
type TargetResult struct {
	Scenario string // scenario title
	Target   string // e.g. "req/s ≥ 1.0× nginx"
	Herald   string // herald's figure, e.g. "0.69× (24197 vs 35212 req/s)"
	Status   string // "met", "not met" or "not measured"
}

func status(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// Targets checks herald against issue #3's targets, for each scenario that
// was run: HTTP/1.1 rate ≥ 1.0× nginx with p99 ≤ nginx's and rate ≥ 1.2×
// Caddy; HTTP/2 rate ≥ 1.0× nginx; TCP throughput ≥ 0.9× HAProxy; idle
// connections ≤ 10 KiB each.
func (rep Report) Targets() []TargetResult {
	var out []TargetResult
	rateVs := func(s Scenario, base string, want float64) {
		t := TargetResult{Scenario: s.Name, Target: fmt.Sprintf("%s ≥ %.1f× %s", s.Unit, want, base), Status: "not measured"}
		h, ok1 := s.median("herald")
		b, ok2 := s.median(base)
		if ok1 && ok2 && b > 0 {
			t.Herald = fmt.Sprintf("%.2f× (%.0f vs %.0f %s)", h/b, h, b, s.Unit)
			t.Status = status(h/b >= want)
		}
		out = append(out, t)
	}
	for _, s := range rep.Scenarios {
		switch {
		case s.Kind == KindRate && s.H1:
			rateVs(s, "nginx", 1.0)
			t := TargetResult{Scenario: s.Name, Target: "p99 ≤ nginx's", Status: "not measured"}
			h, ok1 := s.find("herald")
			n, ok2 := s.find("nginx")
			if ok1 && ok2 {
				p99 := msOf(func(r Run) time.Duration { return r.P99 })
				// A p99 of 0 means no request completed: nothing to compare.
				if hp, np := h.summary(p99).Median, n.summary(p99).Median; hp > 0 && np > 0 {
					t.Herald = fmt.Sprintf("%.3f vs %.3f ms", hp, np)
					t.Status = status(hp <= np)
				}
			}
			out = append(out, t)
			rateVs(s, "caddy", 1.2)
		case s.Kind == KindRate && s.HTTP:
			rateVs(s, "nginx", 1.0)
		case s.Kind == KindThroughput:
			rateVs(s, "haproxy", 0.9)
		case s.Kind == KindIdle:
			t := TargetResult{Scenario: s.Name, Target: "≤ 10 KiB per connection", Status: "not measured"}
			if h, ok := s.median("herald"); ok {
				t.Herald = fmt.Sprintf("%.1f KiB", h)
				t.Status = status(h <= 10)
			}
			out = append(out, t)
		}
	}
	return out
}

// Markdown renders the report as BENCHMARKS.md.
func (rep Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# herald benchmarks\n\n")
	b.WriteString("Written by the load harness (`go run ./bench/cmd/loadbench`, see bench/README.md); do not edit by hand.\n\n")
	if ts := rep.Targets(); len(ts) > 0 {
		b.WriteString("## Targets (issue #3)\n\nherald against the issue's targets, from the medians below.\n\n")
		b.WriteString("| scenario | target | herald | status |\n|---|---|---|---|\n")
		for _, t := range ts {
			h := t.Herald
			if h == "" {
				h = "—"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Scenario, t.Target, h, t.Status)
		}
		b.WriteString("\n")
	}
	b.WriteString("## Machine\n\n")
	for _, m := range rep.Machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	b.WriteString("\n## Conditions\n\n")
	for _, c := range rep.Conditions {
		fmt.Fprintf(&b, "- %s\n", c)
	}
	b.WriteString("\nFigures are medians over the rounds with the minimum–maximum in brackets. Latencies are the median over rounds of each run's percentile. " +
		"CPU is the proxy's user+system time (all its processes) during the measured run, per 100,000 requests (round trips, connections) or per GiB moved; " +
		"peak RSS is the sum of VmHWM over the proxy's processes at the end of the run. \"× direct\", \"× nginx\" and \"× haproxy\" divide the median figure; " +
		"\"—\" marks a proxy that takes no part in a scenario (stock Caddy has no TCP proxy; the direct baseline has no idle figure).\n")
	if rep.ChartPath != "" {
		fmt.Fprintf(&b, "\n![median figure per proxy, one panel per scenario](%s)\n", rep.ChartPath)
	}
	for _, s := range rep.Scenarios {
		fmt.Fprintf(&b, "\n## %s\n\nLoad: %s.\n", s.Name, s.Load)
		if s.Note != "" {
			fmt.Fprintf(&b, "%s\n", s.Note)
		}
		b.WriteString("\n")
		switch s.Kind {
		case KindThroughput:
			s.throughputTable(&b)
		case KindIdle:
			s.idleTable(&b)
		default:
			s.rateTable(&b)
		}
	}
	return b.String()
}

// rows writes one row per proxy: "—" cells for a skipped proxy, "not run"
// for one without runs, row(p) otherwise.
func (s Scenario) rows(b *strings.Builder, cols int, row func(p ProxyRuns) []string) {
	for _, p := range s.Results {
		cells := make([]string, cols)
		switch {
		case p.Skip:
			for i := range cells {
				cells[i] = "—"
			}
		case len(p.Runs) == 0:
			cells[0] = "not run"
		default:
			cells = row(p)
		}
		fmt.Fprintf(b, "| %s | %s |\n", p.Proxy, strings.Join(cells, " | "))
	}
}

func errorsOf(p ProxyRuns) string {
	var n int64
	for _, r := range p.Runs {
		n += r.Errors
	}
	return fmt.Sprint(n)
}

func (s Scenario) rateTable(b *strings.Builder) {
	head := []string{s.Unit}
	if s.Bytes {
		head = append(head, "MiB/s")
	}
	head = append(head, "× direct", "× nginx", "p50 ms", "p99 ms", "p99.9 ms", "CPU s / 100k", "peak RSS MiB", "errors")
	fmt.Fprintf(b, "| proxy | %s |\n|---|%s\n", strings.Join(head, " | "), strings.Repeat("---:|", len(head)))
	s.rows(b, len(head), func(p ProxyRuns) []string {
		c := []string{rangeOf(p.summary(s.value), 0)}
		if s.Bytes {
			c = append(c, rangeOf(p.summary(Run.MiBPerSec), 1))
		}
		c = append(c, s.ratio(p.Proxy, "direct"), s.ratio(p.Proxy, "nginx"),
			rangeOf(p.summary(msOf(func(r Run) time.Duration { return r.P50 })), 3),
			rangeOf(p.summary(msOf(func(r Run) time.Duration { return r.P99 })), 3),
			rangeOf(p.summary(msOf(func(r Run) time.Duration { return r.P999 })), 3))
		if p.Proxy == "direct" {
			c = append(c, "—", "—")
		} else {
			c = append(c, rangeOf(p.summary(Run.CPUPer100k), 2),
				rangeOf(p.summary(func(r Run) float64 { return float64(r.PeakRSSKiB) / 1024 }), 1))
		}
		return append(c, errorsOf(p))
	})
	if r := s.ratio("herald", "caddy"); s.HTTP && r != "—" {
		fmt.Fprintf(b, "\nherald × caddy: %s (%s).\n", r, s.Unit)
	}
}

func (s Scenario) throughputTable(b *strings.Builder) {
	head := []string{"MiB/s", "× direct", "× nginx", "× haproxy", "CPU s / GiB", "peak RSS MiB", "errors"}
	fmt.Fprintf(b, "| proxy | %s |\n|---|%s\n", strings.Join(head, " | "), strings.Repeat("---:|", len(head)))
	s.rows(b, len(head), func(p ProxyRuns) []string {
		c := []string{rangeOf(p.summary(s.value), 1),
			s.ratio(p.Proxy, "direct"), s.ratio(p.Proxy, "nginx"), s.ratio(p.Proxy, "haproxy")}
		if p.Proxy == "direct" {
			c = append(c, "—", "—")
		} else {
			c = append(c, rangeOf(p.summary(Run.CPUPerGiB), 2),
				rangeOf(p.summary(func(r Run) float64 { return float64(r.PeakRSSKiB) / 1024 }), 1))
		}
		return append(c, errorsOf(p))
	})
}

func (s Scenario) idleTable(b *strings.Builder) {
	head := []string{"connections", "RSS before MiB", "RSS after MiB", "KiB / connection", "× nginx", "errors"}
	fmt.Fprintf(b, "| proxy | %s |\n|---|%s\n", strings.Join(head, " | "), strings.Repeat("---:|", len(head)))
	s.rows(b, len(head), func(p ProxyRuns) []string {
		return []string{
			rangeOf(p.summary(func(r Run) float64 { return float64(r.IdleConns) }), 0),
			rangeOf(p.summary(func(r Run) float64 { return float64(r.RSSBeforeKiB) / 1024 }), 1),
			rangeOf(p.summary(func(r Run) float64 { return float64(r.RSSAfterKiB) / 1024 }), 1),
			rangeOf(p.summary(s.value), 2),
			s.ratio(p.Proxy, "nginx"),
			errorsOf(p),
		}
	})
}

// proxyColors keeps each proxy's colour the same in every panel.
var proxyColors = map[string]color.Color{
	"direct":  color.RGBA{150, 150, 150, 255},
	"herald":  color.RGBA{31, 119, 180, 255},
	"nginx":   color.RGBA{44, 160, 44, 255},
	"haproxy": color.RGBA{214, 39, 40, 255},
	"caddy":   color.RGBA{148, 103, 189, 255},
}

// Chart renders one bar-chart panel per scenario (median figure per proxy,
// in the scenario's unit), two panels per row, to a PNG at path.
func (rep Report) Chart(path string) error {
	if len(rep.Scenarios) == 0 {
		return fmt.Errorf("chart: no scenarios")
	}
	var proxies []string
	for _, s := range rep.Scenarios {
		for _, p := range s.Results {
			found := false
			for _, q := range proxies {
				found = found || q == p.Proxy
			}
			if !found {
				proxies = append(proxies, p.Proxy)
			}
		}
	}
	cols := min(2, len(rep.Scenarios))
	rows := (len(rep.Scenarios) + cols - 1) / cols
	plots := make([][]*plot.Plot, rows)
	for i := range plots {
		plots[i] = make([]*plot.Plot, cols)
	}
	for i, s := range rep.Scenarios {
		p, err := s.panel(proxies)
		if err != nil {
			return err
		}
		plots[i/cols][i%cols] = p
	}
	const panelW, panelH = 110 * vg.Millimeter, 62 * vg.Millimeter
	img := vgimg.New(panelW*vg.Length(cols), panelH*vg.Length(rows))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: 6 * vg.Millimeter, PadY: 6 * vg.Millimeter,
		PadTop: 3 * vg.Millimeter, PadBottom: 3 * vg.Millimeter, PadLeft: 3 * vg.Millimeter, PadRight: 3 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, dc)
	for r := range plots {
		for c, p := range plots[r] {
			if p != nil {
				p.Draw(canvases[r][c])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// panel is one scenario's bar chart: a bar per proxy that ran, labelled with
// its median.
func (s Scenario) panel(proxies []string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = s.Name
	p.Title.TextStyle.Font.Size = vg.Points(10)
	p.Y.Label.Text = s.Unit
	if s.Kind == KindIdle {
		p.Y.Label.Text += " (lower is better)"
	}
	var top float64
	var xys plotter.XYs
	var labels []string
	w := vg.Points(22)
	for i, proxy := range proxies {
		v, ok := s.median(proxy)
		if !ok {
			continue
		}
		bars, err := plotter.NewBarChart(plotter.Values{v}, w)
		if err != nil {
			return nil, err
		}
		bars.XMin = float64(i)
		bars.Color = proxyColors[proxy]
		if bars.Color == nil {
			bars.Color = color.Black
		}
		bars.LineStyle.Width = 0
		p.Add(bars)
		top = max(top, v)
		xys = append(xys, plotter.XY{X: float64(i), Y: v})
		labels = append(labels, compact(v))
	}
	if len(xys) > 0 {
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
		if err != nil {
			return nil, err
		}
		for i := range l.TextStyle {
			l.TextStyle[i].Font.Size = vg.Points(7)
			l.TextStyle[i].XAlign = text.XCenter
			l.TextStyle[i].YAlign = text.YBottom
		}
		p.Add(l)
	}
	p.NominalX(proxies...)
	p.Y.Min, p.Y.Max = 0, max(top*1.2, 1)
	p.Y.Tick.Marker = plainTicks{}
	return p, nil
}

// plainTicks are gonum's default ticks labelled without padding zeros
// ("25000", not "25000.00").
type plainTicks struct{}

func (plainTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', -1, 64)
		}
	}
	return ts
}

// compact formats v for a bar label: 48171 → "48.2k", 912.3 → "912", 7.25 → "7.25".
func compact(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fk", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
