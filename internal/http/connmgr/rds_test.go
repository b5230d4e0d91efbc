package connmgr

import (
	"errors"
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// namedRoute is a route that is only its name.
type namedRoute string

func (namedRoute) PerFilterConfig(string) any { return nil }

// fixedResolver resolves every request to one route.
type fixedResolver struct{ r httpfilter.Route }

func (f fixedResolver) Resolve(*hhttp.Headers, uint16) httpfilter.Route { return f.r }

func TestDynamicRoutes(t *testing.T) {
	d := NewDynamicRoutes(func(rc any) (RouteResolver, error) {
		name, _ := rc.(string)
		if name == "" {
			return nil, errors.New("bad route configuration")
		}
		return fixedResolver{r: namedRoute(name)}, nil
	})
	resolve := func() httpfilter.Route { return d.Resolve(&hhttp.Headers{}, 80) }
	if got := resolve(); got != nil || d.Ready() {
		t.Fatalf("before the first table: Resolve = %v, Ready = %v; want no route, not ready", got, d.Ready())
	}
	steps := []struct {
		name    string
		rc      any
		commit  bool
		want    httpfilter.Route
		wantErr bool
	}{
		{name: "prepared, not committed", rc: "a", want: nil},
		{name: "committed", rc: "a", commit: true, want: namedRoute("a")},
		{name: "bad update keeps the table", rc: 42, wantErr: true, want: namedRoute("a")},
		{name: "next table", rc: "b", commit: true, want: namedRoute("b")},
	}
	for _, st := range steps {
		commit, err := d.Prepare(st.rc)
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: Prepare error = %v, wantErr %v", st.name, err, st.wantErr)
		}
		if st.commit {
			commit()
		}
		if got := resolve(); got != st.want {
			t.Errorf("%s: Resolve = %v, want %v", st.name, got, st.want)
		}
	}
}

// BenchmarkDynamicRoutesResolve is the per-stream cost RDS adds: one atomic
// load.
func BenchmarkDynamicRoutesResolve(b *testing.B) {
	d := NewDynamicRoutes(func(any) (RouteResolver, error) { return fixedResolver{r: namedRoute("a")}, nil })
	commit, _ := d.Prepare("a")
	commit()
	h := &hhttp.Headers{}
	b.ReportAllocs()
	for b.Loop() {
		d.Resolve(h, 80)
	}
}
