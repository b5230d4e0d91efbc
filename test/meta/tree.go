package meta

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// ExtensionsDir is the folder that holds every extension.
const ExtensionsDir = "extensions"

// AllDir is the folder whose package links every extension into the binary.
const AllDir = "extensions/all"

// Problem is one thing a check found wrong, at a slash-separated path
// relative to the repository root (with a line when one is known).
type Problem struct {
	Path string
	Line int
	Msg  string
}

// String formats p as "path:line: msg", or "path: msg" without a line.
func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.Path, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.Path, p.Msg)
}

// skipDir reports whether the go tool ignores a directory called name:
// testdata, and names starting with "." or "_" (go help packages).
func skipDir(name string) bool {
	return name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")
}

// isSource reports whether name is a non-test Go source file.
func isSource(name string) bool {
	return strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go")
}

// goSources returns every non-test .go file of the tree under root (a
// folder of fsys, "." for all of it), skipping what the go tool skips.
func goSources(fsys fs.FS, root string) ([]string, error) {
	var out []string
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && skipDir(d.Name()) {
				return fs.SkipDir
			}
			return nil
		}
		if isSource(d.Name()) {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// ExtensionDirs returns every folder under extensions/ that holds non-test
// .go files, except extensions/all itself, sorted. These are the extension
// folders the other checks hold to their rules.
func ExtensionDirs(fsys fs.FS) ([]string, error) {
	files, err := goSources(fsys, ExtensionsDir)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		dir := path.Dir(f)
		if dir == AllDir || dir == ExtensionsDir || seen[dir] {
			continue
		}
		seen[dir] = true
		out = append(out, dir)
	}
	return out, nil
}

// ModulePath reads the module path from the go.mod at the root of fsys.
func ModulePath(fsys fs.FS) (string, error) {
	data, err := fs.ReadFile(fsys, "go.mod")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`), nil
		}
	}
	return "", fmt.Errorf("go.mod: no module line")
}
