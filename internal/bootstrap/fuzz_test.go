package bootstrap

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
)

// FuzzParse feeds arbitrary bytes to the YAML loader. It must never panic;
// every failure must be a configerr.List positioned in the input; and a
// bootstrap it accepts must survive a round trip through proto3 JSON (the
// decoder accepts what protojson prints). Seeds: testdata/fuzz/FuzzParse and
// the valid golden configs.
func FuzzParse(f *testing.F) {
	valid, _ := filepath.Glob(filepath.Join(corpusDir, "valid", "*.yaml"))
	for _, p := range valid {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		bs, _, err := Parse("fuzz.yaml", data)
		if err != nil {
			var l configerr.List
			if !errors.As(err, &l) || len(l) == 0 {
				t.Fatalf("Parse error is %T %v, want a non-empty configerr.List", err, err)
			}
			lines := bytes.Count(data, []byte{'\n'}) + 1
			for _, e := range l {
				if e.Pos.File != "fuzz.yaml" || e.Pos.Line > lines {
					t.Fatalf("error %q is positioned outside the input (%d lines)", e, lines)
				}
			}
			return
		}
		js, err := protojson.Marshal(bs)
		if err != nil {
			t.Fatalf("protojson.Marshal of a parsed bootstrap: %v", err)
		}
		back, _, err := Parse("fuzz.json", js)
		if err != nil {
			t.Fatalf("re-parsing protojson output failed: %v\njson: %s", err, js)
		}
		if !proto.Equal(bs, back) {
			t.Fatalf("round trip changed the bootstrap\njson: %s", js)
		}
	})
}
