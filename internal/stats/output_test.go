package stats

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// smallStore is the store behind the golden files.
func smallStore() *Store {
	s := NewStore()
	s.Counter("cluster.backend_service.upstream_rq_total").Add(7)
	s.Counter("cluster.backend_service.upstream_rq_200").Add(5)
	s.Counter("cluster.backend_service.upstream_rq_503").Add(2)
	s.Counter("cluster.backend_service.upstream_cx_connect_fail") // never used
	s.Counter("cluster.api.upstream_rq_total").Add(3)
	s.Counter("http.ingress_http.downstream_rq_2xx").Add(9)
	s.Counter("http.ingress_http.downstream_rq_5xx").Add(1)
	s.Counter("listener.127.0.0.1_10000.downstream_cx_total").Add(4)
	s.Gauge("server.live").Set(1)
	s.Gauge("cluster.backend_service.upstream_cx_active").Set(2)
	s.Gauge("http.ingress_http.downstream_rq_active") // never used
	h := s.Histogram("cluster.backend_service.upstream_rq_time", Milliseconds)
	h.Record(3)
	h.Record(200)
	s.MergeHistograms()
	h.Record(40)
	s.Histogram("http.ingress_http.downstream_rq_time", Milliseconds) // never recorded
	return s
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name   string
		golden string
		write  func(*bytes.Buffer, *Store) error
	}{
		{name: "text", golden: "stats.txt.golden",
			write: func(b *bytes.Buffer, s *Store) error { return WriteText(b, s, TextOptions{}) }},
		{name: "json", golden: "stats.json.golden",
			write: func(b *bytes.Buffer, s *Store) error { return WriteJSON(b, s, TextOptions{}) }},
		{name: "prometheus", golden: "stats.prom.golden",
			write: func(b *bytes.Buffer, s *Store) error { return WritePrometheus(b, s, PromOptions{}) }},
		{name: "prometheus_usedonly", golden: "stats_usedonly.prom.golden",
			write: func(b *bytes.Buffer, s *Store) error { return WritePrometheus(b, s, PromOptions{UsedOnly: true}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.write(&b, smallStore()); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, tc.golden, b.Bytes())
		})
	}
}

// The brief's and Envoy's canonical lines, independent of the goldens.
func TestPrometheusLines(t *testing.T) {
	var b bytes.Buffer
	if err := WritePrometheus(&b, smallStore(), PromOptions{}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"# TYPE envoy_cluster_upstream_rq_total counter\n" +
			"envoy_cluster_upstream_rq_total{envoy_cluster_name=\"api\"} 3\n" +
			"envoy_cluster_upstream_rq_total{envoy_cluster_name=\"backend_service\"} 7\n\n",
		"envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"backend_service\"} 5\n",
		"envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"ingress_http\"} 9\n",
		"envoy_listener_downstream_cx_total{envoy_listener_address=\"127.0.0.1_10000\"} 4\n",
		"envoy_server_live{} 1\n",
		"envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"backend_service\",le=\"3600000\"} 3\n",
		"envoy_cluster_upstream_rq_time_sum{envoy_cluster_name=\"backend_service\"} 243\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q; got:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "# TYPE envoy_cluster_upstream_rq_total "); n != 1 {
		t.Errorf("TYPE lines for envoy_cluster_upstream_rq_total = %d, want 1", n)
	}
}

// TestPrometheusParses proves the output is valid exposition: expfmt's
// parser reads every family back with the right type, labels and values.
func TestPrometheusParses(t *testing.T) {
	var b bytes.Buffer
	if err := WritePrometheus(&b, smallStore(), PromOptions{}); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(&b)
	if err != nil {
		t.Fatalf("expfmt cannot parse the output: %v", err)
	}
	rq, ok := fams["envoy_cluster_upstream_rq_total"]
	if !ok {
		t.Fatalf("family envoy_cluster_upstream_rq_total missing; have %d families", len(fams))
	}
	if got := rq.GetType().String(); got != "COUNTER" {
		t.Errorf("type = %s, want COUNTER", got)
	}
	got := map[string]float64{}
	for _, m := range rq.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "envoy_cluster_name" {
				got[l.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if diff := cmp.Diff(map[string]float64{"api": 3, "backend_service": 7}, got); diff != "" {
		t.Errorf("envoy_cluster_upstream_rq_total by cluster (-want +got):\n%s", diff)
	}
	h := fams["envoy_cluster_upstream_rq_time"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 3 || h.GetSampleSum() != 243 || len(h.GetBucket()) != len(DefaultBuckets)+1 {
		t.Errorf("histogram count=%d sum=%g buckets=%d, want 3, 243, %d (with +Inf)", h.GetSampleCount(), h.GetSampleSum(), len(h.GetBucket()), len(DefaultBuckets)+1)
	}
	if live := fams["envoy_server_live"].GetMetric()[0].GetGauge().GetValue(); live != 1 {
		t.Errorf("envoy_server_live = %g, want 1", live)
	}
}

func TestLabelValuesEscaped(t *testing.T) {
	s := NewStore()
	s.Counter(`cluster.we"ird\name.upstream_rq_total`).Inc()
	var b bytes.Buffer
	if err := WritePrometheus(&b, s, PromOptions{}); err != nil {
		t.Fatal(err)
	}
	if want := `envoy_cluster_upstream_rq_total{envoy_cluster_name="we\"ird\\name"} 1`; !strings.Contains(b.String(), want) {
		t.Errorf("output lacks %q; got:\n%s", want, b.String())
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	if _, err := p.TextToMetricFamilies(&b); err != nil {
		t.Errorf("expfmt cannot parse the output: %v", err)
	}
}

func TestWriteTextOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    TextOptions
		want    string
		wantErr string
	}{
		{
			name: "filter_and_usedonly",
			opts: TextOptions{Filter: regexp.MustCompile(`backend_service\.upstream_(rq_2|cx)`), UsedOnly: true},
			want: "cluster.backend_service.upstream_cx_active: 2\ncluster.backend_service.upstream_rq_200: 5\n",
		},
		{
			name: "counters_only",
			opts: TextOptions{Filter: regexp.MustCompile(`^server|upstream_cx_active`), Type: TypeCounters},
			want: "",
		},
		{
			name: "gauges_only_with_unused",
			opts: TextOptions{Filter: regexp.MustCompile(`active`), Type: TypeGauges},
			want: "cluster.backend_service.upstream_cx_active: 2\nhttp.ingress_http.downstream_rq_active: 0\n",
		},
		{
			name: "histograms_unused",
			opts: TextOptions{Filter: regexp.MustCompile(`downstream_rq_time`), Type: TypeHistograms},
			want: "http.ingress_http.downstream_rq_time: No recorded values\n",
		},
		{name: "bad_type", opts: TextOptions{Type: "counters"}, wantErr: `invalid type "counters"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			err := WriteText(&b, smallStore(), tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("WriteText() error = %v, want containing %q", err, tc.wantErr)
				}
				if b.Len() != 0 {
					t.Errorf("WriteText() wrote %q on error", b.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, b.String()); diff != "" {
				t.Errorf("WriteText() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteJSONIsValid(t *testing.T) {
	for _, opts := range []TextOptions{{}, {UsedOnly: true}, {Type: TypeCounters}, {Type: TypeHistograms}} {
		var b bytes.Buffer
		if err := WriteJSON(&b, smallStore(), opts); err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Stats []json.RawMessage `json:"stats"`
		}
		if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
			t.Errorf("WriteJSON(%+v) is not JSON: %v\n%s", opts, err, b.String())
		}
	}
}

func TestQuantiles(t *testing.T) {
	nan := math.NaN()
	bounds := []float64{10, 100}
	tests := []struct {
		name   string
		counts []uint64 // per bucket, last is +Inf
		want   []float64
	}{
		{name: "empty", counts: []uint64{0, 0, 0}, want: []float64{nan, nan, nan, nan, nan, nan, nan, nan, nan, nan}},
		// One bucket (10,100]: linear from its lower to its upper bound.
		{name: "one_bucket", counts: []uint64{0, 4, 0}, want: []float64{10, 32.5, 55, 77.5, 91, 95.5, 99.1, 99.55, 99.91, 100}},
		// Half in [0,10], half in (10,100]: the median is the bucket edge.
		{name: "two_buckets", counts: []uint64{2, 2, 0}, want: []float64{0, 5, 10, 55, 82, 91, 98.2, 99.1, 99.82, 100}},
		// The +Inf bucket reports its lower bound.
		{name: "overflow", counts: []uint64{0, 0, 3}, want: []float64{100, 100, 100, 100, 100, 100, 100, 100, 100, 100}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := computeQuantiles(tc.counts, bounds)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b float64) bool {
				return a == b || math.IsNaN(a) && math.IsNaN(b) || math.Abs(a-b) < 1e-9
			})); diff != "" {
				t.Errorf("computeQuantiles(%v) (-want +got):\n%s", tc.counts, diff)
			}
		})
	}
}

func TestHistogramIntervals(t *testing.T) {
	s := NewStore()
	h := s.Histogram("cluster.c.upstream_rq_time", Milliseconds)
	h.Record(3)
	interval, cumulative := h.Quantiles()
	if !math.IsNaN(interval[0]) || cumulative[0] != 1 {
		t.Fatalf("before merge: P0 = (%g,%g), want (NaN,1)", interval[0], cumulative[0])
	}
	s.MergeHistograms()
	h.Record(200)
	interval, cumulative = h.Quantiles()
	// The interval is the one closed by the merge: only the 3.
	if interval[len(interval)-1] != 5 || cumulative[len(cumulative)-1] != 250 {
		t.Errorf("after merge: P100 = (%g,%g), want (5,250)", interval[len(interval)-1], cumulative[len(cumulative)-1])
	}
	s.MergeHistograms()
	s.MergeHistograms()
	interval, _ = h.Quantiles()
	if !math.IsNaN(interval[0]) {
		t.Errorf("after an empty interval: P0 interval = %g, want NaN", interval[0])
	}
}

func TestAppendEnvoyDouble(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{in: math.NaN(), want: "nan"},
		{in: 0, want: "0"},
		{in: 202.5, want: "202.5"},
		{in: 3600000, want: "3600000"},
		{in: 1e16, want: "1e+16"},
		{in: 0.00001, want: "1e-05"},
		{in: 0.0001, want: "0.0001"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := string(appendEnvoyDouble(nil, tc.in)); got != tc.want {
				t.Errorf("appendEnvoyDouble(%g) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestCompareStatNames(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{a: "a.b", b: "a-b", want: -1}, // token "a" < "a-b", unlike bytes
		{a: "a.b", b: "a.b", want: 0},
		{a: "a", b: "a.b", want: -1},
		{a: "a.c", b: "a.b.c", want: 1},
	}
	for _, tc := range tests {
		t.Run(tc.a+"_vs_"+tc.b, func(t *testing.T) {
			if got := compareStatNames(tc.a, tc.b); got != tc.want {
				t.Errorf("compareStatNames(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
			}
		})
	}
}
