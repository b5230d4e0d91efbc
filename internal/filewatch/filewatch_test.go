package filewatch

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFingerprint(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "a.yaml")
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "one")
	tests := []struct {
		name    string
		change  func()
		withDir bool
		same    bool
	}{
		{name: "nothing changed", change: func() {}, same: true},
		{name: "rewritten with another size", change: func() { write("a.yaml", "three") }},
		{name: "moved over", change: func() {
			write("b.tmp", "one")
			if err := os.Rename(filepath.Join(dir, "b.tmp"), f); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "removed", change: func() { os.Remove(f) }},
		{name: "new directory entry", withDir: true, change: func() { write("c", "x") }},
		{name: "new entry outside a watched file", change: func() { write("d", "x") }, same: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			write("a.yaml", "one")
			d := ""
			if tc.withDir {
				d = dir
			}
			before := Of([]string{f}, d)
			tc.change()
			if got := before.Equal(Of([]string{f}, d)); got != tc.same {
				t.Errorf("Equal = %v, want %v", got, tc.same)
			}
		})
	}
}
