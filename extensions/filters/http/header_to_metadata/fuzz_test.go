package headertometadata

import (
	"testing"

	h2mv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"

	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/stats"
)

// FuzzRules runs peer-controlled header and cookie values through every
// value type and encoding: nothing may panic, and a NUMBER value is a
// number when present.
func FuzzRules(f *testing.F) {
	for _, s := range []string{"", "42", " 1e3 ", "aGVsbG8", "aGVsbG8=", "CgN4eXo", "\x00\xff", "a=1; b"} {
		f.Add(s, "plan="+s)
	}
	cfg := `request_rules:
- {header: x-s, on_header_present: {key: s}}
- {header: x-n, on_header_present: {key: n, type: NUMBER}}
- {header: x-b, on_header_present: {key: b, encode: BASE64}}
- {header: x-p, on_header_present: {key: p, type: PROTOBUF_VALUE, encode: BASE64}}
- {header: x-r, on_header_present: {key: r, regex_value_rewrite: {pattern: {regex: '^(\w*)-.*$'}, substitution: '\1'}}}
- {cookie: plan, on_header_present: {key: c}}`
	factory, err := Build(httpfiltertest.Parse(f, cfg, &h2mv3.Config{}), httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, v, cookie string) {
		cb := &httpfiltertest.Callbacks{}
		fl := factory(cb).(*Filter)
		h := httpfiltertest.Request()
		for _, n := range []string{"x-s", "x-n", "x-b", "x-p", "x-r"} {
			h.Add(n, v)
		}
		h.Add("cookie", cookie)
		fl.DecodeHeaders(h, true)
		fl.OnDestroy()
		if n, ok := cb.Info.DynamicMetadataFor(Name).GetFields()["n"]; ok && n.GetKind() == nil {
			t.Errorf("NUMBER value without a kind for %q", v)
		}
	})
}
