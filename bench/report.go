package bench

import (
	"fmt"
	"image/color"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// ProxyRuns is every round of one proxy in one scenario.
type ProxyRuns struct {
	Proxy string // "direct", "herald", "nginx", "haproxy"
	Runs  []Run
}

// Scenario is one load pattern and its results per proxy, in display order.
type Scenario struct {
	Name    string // e.g. "HTTP/1.1 small responses"
	Load    string // how the load was generated, e.g. "wrk -t1 -c50 -d10s"
	Unit    string // "req/s" or "round trips/s"
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

func rps(r Run) float64 { return r.RPS }

func (s Scenario) find(proxy string) (ProxyRuns, bool) {
	for _, r := range s.Results {
		if r.Proxy == proxy && len(r.Runs) > 0 {
			return r, true
		}
	}
	return ProxyRuns{}, false
}

// Markdown renders the report as BENCHMARKS.md.
func (rep Report) Markdown() string {
	var b strings.Builder
	b.WriteString("# herald benchmarks\n\n")
	b.WriteString("Written by the load harness (`go run ./bench/cmd/loadbench`, see bench/README.md); do not edit by hand.\n\n")
	b.WriteString("## Machine\n\n")
	for _, m := range rep.Machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	b.WriteString("\n## Conditions\n\n")
	for _, c := range rep.Conditions {
		fmt.Fprintf(&b, "- %s\n", c)
	}
	b.WriteString("\nFigures are medians over the rounds with the minimum–maximum in brackets. Latencies are the median over rounds of each run's percentile. " +
		"CPU is the proxy's user+system time (all its processes) during the measured run, per 100,000 requests; " +
		"peak RSS is the sum of VmHWM over the proxy's processes at the end of the run. \"× direct\" and \"× nginx\" divide the median rate.\n")
	if rep.ChartPath != "" {
		fmt.Fprintf(&b, "\n![requests per second per proxy and scenario](%s)\n", rep.ChartPath)
	}
	for _, s := range rep.Scenarios {
		fmt.Fprintf(&b, "\n## %s\n\nLoad: %s.\n\n", s.Name, s.Load)
		fmt.Fprintf(&b, "| proxy | %s | × direct | × nginx | p50 ms | p99 ms | p99.9 ms | CPU s / 100k req | peak RSS MiB | errors |\n", s.Unit)
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		direct, haveDirect := s.find("direct")
		nginx, haveNginx := s.find("nginx")
		for _, p := range s.Results {
			if len(p.Runs) == 0 {
				fmt.Fprintf(&b, "| %s | not run | | | | | | | | |\n", p.Proxy)
				continue
			}
			r := p.summary(rps)
			ratio := func(base ProxyRuns, ok bool) string {
				if !ok || base.Proxy == p.Proxy {
					return "—"
				}
				m := base.summary(rps).Median
				if m == 0 {
					return "—"
				}
				return fmt.Sprintf("%.2f", r.Median/m)
			}
			ms := func(f func(Run) time.Duration) string {
				s := p.summary(func(r Run) float64 { return float64(f(r)) / float64(time.Millisecond) })
				return fmt.Sprintf("%.3f (%.3f–%.3f)", s.Median, s.Min, s.Max)
			}
			cpu, rss := "—", "—"
			if p.Proxy != "direct" {
				c := p.summary(Run.CPUPer100k)
				cpu = fmt.Sprintf("%.2f (%.2f–%.2f)", c.Median, c.Min, c.Max)
				m := p.summary(func(r Run) float64 { return float64(r.PeakRSSKiB) / 1024 })
				rss = fmt.Sprintf("%.1f (%.1f–%.1f)", m.Median, m.Min, m.Max)
			}
			var errs int64
			for _, run := range p.Runs {
				errs += run.Errors
			}
			fmt.Fprintf(&b, "| %s | %.0f (%.0f–%.0f) | %s | %s | %s | %s | %s | %s | %s | %d |\n",
				p.Proxy, r.Median, r.Min, r.Max, ratio(direct, haveDirect), ratio(nginx, haveNginx),
				ms(func(r Run) time.Duration { return r.P50 }), ms(func(r Run) time.Duration { return r.P99 }),
				ms(func(r Run) time.Duration { return r.P999 }), cpu, rss, errs)
		}
	}
	return b.String()
}

// Chart renders a grouped bar chart of median rate per proxy per scenario to
// a PNG at path.
func (rep Report) Chart(path string) error {
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
	pl := plot.New()
	pl.Title.Text = "herald vs nginx vs HAProxy (median rate, proxy on one core)"
	pl.Y.Label.Text = "requests (round trips) per second"
	names := make([]string, len(rep.Scenarios))
	for i, s := range rep.Scenarios {
		names[i] = s.Name
	}
	colors := []color.Color{
		color.RGBA{150, 150, 150, 255}, color.RGBA{31, 119, 180, 255},
		color.RGBA{44, 160, 44, 255}, color.RGBA{214, 39, 40, 255}, color.RGBA{148, 103, 189, 255},
	}
	w := vg.Points(18)
	var top float64
	for i, proxy := range proxies {
		vals := make(plotter.Values, len(rep.Scenarios))
		for j, s := range rep.Scenarios {
			if p, ok := s.find(proxy); ok {
				vals[j] = p.summary(rps).Median
				top = max(top, vals[j])
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return err
		}
		bars.Color = colors[i%len(colors)]
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(float64(i)-float64(len(proxies)-1)/2)
		pl.Add(bars)
		pl.Legend.Add(proxy, bars)
	}
	pl.Legend.Top = true
	pl.NominalX(names...)
	pl.Y.Min, pl.Y.Max = 0, top*1.25 // room for the legend
	return pl.Save(vg.Length(180+len(rep.Scenarios)*len(proxies)*28)*vg.Millimeter/4+120*vg.Millimeter, 110*vg.Millimeter, path)
}
