package meta

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// NetHTTPAllowed lists the folders (slash-terminated prefixes of paths
// relative to the repository root) whose non-test files may import net/http.
// internal/http shadows the package name, and herald's own codecs must not
// drift back to net/http's server (STYLE.md §1); examples/ and
// bench/cmd/ (the load harness and its backends) are stand-alone programs
// that are never linked into herald.
var NetHTTPAllowed = []string{
	"internal/http/codec/",
	"internal/admin/",
	"internal/testutil/",
	"examples/",
	"bench/cmd/",
}

// imports parses only the import block of one file.
func imports(fsys fs.FS, file string) ([]importSpec, error) {
	src, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.ImportsOnly)
	if err != nil {
		return nil, err
	}
	out := make([]importSpec, 0, len(f.Imports))
	for _, is := range f.Imports {
		p, err := strconv.Unquote(is.Path.Value)
		if err != nil {
			return nil, fmt.Errorf("%s: bad import %s", file, is.Path.Value)
		}
		spec := importSpec{path: p, line: fset.Position(is.Pos()).Line}
		if is.Name != nil {
			spec.name = is.Name.Name
		}
		out = append(out, spec)
	}
	return out, nil
}

type importSpec struct {
	name string // "" when the import has no name
	path string
	line int
}

// CheckAllImports checks that extensions/all blank-imports every extension
// folder (ExtensionDirs) and nothing else: each import of its non-test files
// must be `_ "<module>/<extension folder>"`.
func CheckAllImports(fsys fs.FS) ([]Problem, error) {
	mod, err := ModulePath(fsys)
	if err != nil {
		return nil, err
	}
	dirs, err := ExtensionDirs(fsys)
	if err != nil {
		return nil, err
	}
	isExt := map[string]bool{}
	for _, d := range dirs {
		isExt[d] = true
	}
	files, err := goSources(fsys, AllDir)
	if err != nil {
		return nil, err
	}
	var probs []Problem
	if len(files) == 0 {
		probs = append(probs, Problem{Path: AllDir, Msg: "no Go files: nothing links the extensions into herald"})
	}
	imported := map[string]bool{}
	for _, f := range files {
		if path.Dir(f) != AllDir {
			continue // a sub-folder of extensions/all would be a separate package
		}
		specs, err := imports(fsys, f)
		if err != nil {
			return nil, err
		}
		for _, is := range specs {
			rel, ok := strings.CutPrefix(is.path, mod+"/")
			switch {
			case !ok || !isExt[rel]:
				probs = append(probs, Problem{Path: f, Line: is.line,
					Msg: fmt.Sprintf("imports %q, which is not an extension folder (a folder under %s/ with non-test .go files)", is.path, ExtensionsDir)})
			case is.name != "_":
				probs = append(probs, Problem{Path: f, Line: is.line,
					Msg: fmt.Sprintf("imports %q without _: extensions are linked by blank import", is.path)})
			}
			imported[rel] = true
		}
	}
	for _, d := range dirs {
		if !imported[d] {
			probs = append(probs, Problem{Path: d,
				Msg: fmt.Sprintf("extension is not linked: add _ %q to %s", mod+"/"+d, AllDir)})
		}
	}
	return probs, nil
}

// CheckNetHTTP checks that no non-test .go file imports net/http or one of
// its sub-packages unless its path starts with one of allowed.
func CheckNetHTTP(fsys fs.FS, allowed []string) ([]Problem, error) {
	files, err := goSources(fsys, ".")
	if err != nil {
		return nil, err
	}
	var probs []Problem
	for _, f := range files {
		if hasAnyPrefix(f, allowed) {
			continue
		}
		specs, err := imports(fsys, f)
		if err != nil {
			return nil, err
		}
		for _, is := range specs {
			if is.path == "net/http" || strings.HasPrefix(is.path, "net/http/") {
				probs = append(probs, Problem{Path: f, Line: is.line,
					Msg: fmt.Sprintf("imports %q; only %s may", is.path, strings.Join(allowed, ", "))})
			}
		}
	}
	return probs, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
