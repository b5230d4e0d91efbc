package bootstrap

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite test/configs/invalid/*.golden from the current errors")

// The corpus sizes are asserted so that a file the globs stop matching (a
// renamed extension, a moved folder) fails the test instead of being skipped.
const (
	wantValidConfigs   = 4
	wantInvalidConfigs = 13
	corpusDir          = "../../test/configs"
)

// corpus lists the configs of one corpus folder: *.yaml, *.yml and *.json.
func corpus(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml", "*.json"} {
		m, err := filepath.Glob(filepath.Join(corpusDir, dir, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	return files
}

func TestGoldenValid(t *testing.T) {
	files := corpus(t, "valid")
	if len(files) != wantValidConfigs {
		t.Fatalf("found %d valid configs, want %d: %v", len(files), wantValidConfigs, files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := Load(Options{Path: f})
			if err != nil {
				t.Fatalf("Load(%s) failed:\n%v", f, err)
			}
			if cfg.Bootstrap.GetStaticResources() == nil {
				t.Errorf("Load(%s): no static_resources", f)
			}
		})
	}
}

// TestGoldenInvalid loads each test/configs/invalid/NAME.{yaml,json} (with
// NAME.config-yaml as --config-yaml when present) and compares the error
// text with NAME.golden. Run with -update to rewrite the goldens.
func TestGoldenInvalid(t *testing.T) {
	dir := filepath.Join(corpusDir, "invalid")
	files := corpus(t, "invalid")
	if len(files) != wantInvalidConfigs {
		t.Fatalf("found %d invalid configs, want %d: %v", len(files), wantInvalidConfigs, files)
	}
	goldens, err := filepath.Glob(filepath.Join(dir, "*.golden"))
	if err != nil {
		t.Fatal(err)
	}
	if !*update && len(goldens) != len(files) {
		t.Errorf("found %d .golden files for %d invalid configs; every config needs exactly one", len(goldens), len(files))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		t.Run(filepath.Base(f), func(t *testing.T) {
			opts := Options{Path: f}
			if b, err := os.ReadFile(filepath.Join(dir, name+".config-yaml")); err == nil {
				opts.YAML = string(b)
			}
			_, err := Load(opts)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want an error", f)
			}
			got := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "") + "\n"
			golden := filepath.Join(dir, name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("missing golden (run go test -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("Load(%s) error:\n%s\nwant (%s):\n%s", f, got, golden, want)
			}
		})
	}
}
