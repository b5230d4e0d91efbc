package meta

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
)

// ReadmeName is the file every extension folder documents itself in.
const ReadmeName = "README.md"

// Registered maps an extension kind — the folder between extensions/ and
// the extension's own folder, e.g. "filters/http" or "clusters" — to the
// type URLs registered for that kind. A kind missing from the map is one
// the meta test does not know a registry for, which is itself a problem.
type Registered map[string][]string

// Kind returns the kind of an extension folder: "extensions/filters/http/router" → "filters/http".
func Kind(dir string) string {
	return path.Dir(strings.TrimPrefix(dir, ExtensionsDir+"/"))
}

// Readme is what the checks read from an extension README.
type Readme struct {
	// TypeURLs are the type URLs listed in the "Type URLs" section, in order,
	// with the line each is on.
	TypeURLs []Listed
	// HasTypeURLsSection is true when the README has a "Type URLs" heading.
	HasTypeURLsSection bool
	// YAML are the fenced ```yaml (or ```yml) blocks, in order.
	YAML []Block
}

// Listed is one type URL of a README's Type URLs section.
type Listed struct {
	URL  string
	Line int
}

// Block is one fenced code block.
type Block struct {
	// Line is the 1-based line of the opening fence.
	Line int
	Text string
}

var (
	typeURLRE = regexp.MustCompile(`type\.googleapis\.com/[A-Za-z_][A-Za-z0-9_.]*[A-Za-z0-9_]`)
	headingRE = regexp.MustCompile(`^(#{1,6})[ \t]+(.*?)[ \t#]*$`)
)

// ParseReadme reads the parts of a Markdown README the checks need.
// Headings inside fenced code blocks (YAML comments) are not headings.
func ParseReadme(data []byte) Readme {
	var r Readme
	var (
		fence      string // the opening fence marker while inside a block, else ""
		block      *Block
		body       strings.Builder
		typeLevel  int // heading level of the open Type URLs section, 0 when not in one
		lineNumber int
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lineNumber++
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		indent := len(line) - len(trimmed)
		if fence != "" {
			if indent < 4 && strings.HasPrefix(trimmed, fence) && strings.TrimSpace(strings.TrimLeft(trimmed, fence[:1])) == "" {
				if block != nil {
					block.Text = body.String()
					r.YAML = append(r.YAML, *block)
				}
				fence, block = "", nil
				continue
			}
			if block != nil {
				body.WriteString(line)
				body.WriteByte('\n')
			}
			continue
		}
		if marker, info, ok := openingFence(trimmed, indent); ok {
			fence = marker
			if lang := strings.ToLower(firstWord(info)); lang == "yaml" || lang == "yml" {
				block = &Block{Line: lineNumber}
				body.Reset()
			}
			continue
		}
		if m := headingRE.FindStringSubmatch(line); m != nil {
			level := len(m[1])
			if typeLevel > 0 && level <= typeLevel {
				typeLevel = 0
			}
			if t := strings.ToLower(m[2]); t == "type urls" || t == "type url" {
				typeLevel = level
				r.HasTypeURLsSection = true
			}
			continue
		}
		if typeLevel > 0 {
			for _, u := range typeURLRE.FindAllString(line, -1) {
				r.TypeURLs = append(r.TypeURLs, Listed{URL: u, Line: lineNumber})
			}
		}
	}
	if block != nil { // unterminated fence: CommonMark closes it at the end of the document
		block.Text = body.String()
		r.YAML = append(r.YAML, *block)
	}
	return r
}

// openingFence recognises a CommonMark code fence: three or more backticks
// or tildes, indented less than four spaces.
func openingFence(trimmed string, indent int) (marker, info string, ok bool) {
	if indent >= 4 || len(trimmed) < 3 {
		return "", "", false
	}
	c := trimmed[0]
	if c != '`' && c != '~' {
		return "", "", false
	}
	n := 0
	for n < len(trimmed) && trimmed[n] == c {
		n++
	}
	if n < 3 {
		return "", "", false
	}
	return trimmed[:n], strings.TrimSpace(trimmed[n:]), true
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// readReadme reads and parses dir's README; ok is false when there is none.
func readReadme(fsys fs.FS, dir string) (Readme, bool, error) {
	data, err := fs.ReadFile(fsys, path.Join(dir, ReadmeName))
	if errors.Is(err, fs.ErrNotExist) {
		return Readme{}, false, nil
	}
	if err != nil {
		return Readme{}, false, err
	}
	return ParseReadme(data), true, nil
}

// CheckReadmes checks that every extension folder has a README.md, that
// every type URL its "Type URLs" section lists is registered for the
// folder's kind, that no two READMEs list the same URL, and that every type
// URL registered for a kind is listed by a README of that kind. Together:
// the READMEs of a kind list exactly what the kind's registry holds.
func CheckReadmes(fsys fs.FS, reg Registered) ([]Problem, error) {
	dirs, err := ExtensionDirs(fsys)
	if err != nil {
		return nil, err
	}
	var probs []Problem
	listedBy := map[string]string{} // type URL → README that lists it
	for _, dir := range dirs {
		file := path.Join(dir, ReadmeName)
		r, ok, err := readReadme(fsys, dir)
		if err != nil {
			return nil, err
		}
		if !ok {
			probs = append(probs, Problem{Path: dir, Msg: "no " + ReadmeName + " (Envoy name, type URLs, supported and unsupported fields, stats, example)"})
			continue
		}
		kind := Kind(dir)
		urls, known := reg[kind]
		if !known {
			probs = append(probs, Problem{Path: dir, Msg: fmt.Sprintf("no registry is known for extension kind %q; teach the meta test its registry", kind)})
			continue
		}
		registered := map[string]bool{}
		for _, u := range urls {
			registered[u] = true
		}
		for _, l := range r.TypeURLs {
			if !registered[l.URL] {
				probs = append(probs, Problem{Path: file, Line: l.Line,
					Msg: fmt.Sprintf("Type URLs lists %s, which no %s extension registers", l.URL, kind)})
			}
			if other, dup := listedBy[l.URL]; dup && other != file {
				probs = append(probs, Problem{Path: file, Line: l.Line,
					Msg: fmt.Sprintf("Type URLs lists %s, which %s lists too", l.URL, other)})
				continue
			}
			listedBy[l.URL] = file
		}
	}
	kinds := make([]string, 0, len(reg))
	for k := range reg {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, kind := range kinds {
		urls := append([]string(nil), reg[kind]...)
		sort.Strings(urls)
		for _, u := range urls {
			if _, ok := listedBy[u]; !ok {
				probs = append(probs, Problem{Path: ExtensionsDir + "/" + kind,
					Msg: fmt.Sprintf("%s is registered but no README's Type URLs section lists it", u)})
			}
		}
	}
	return probs, nil
}

// Validator checks one complete bootstrap given as YAML, the way
// `herald --mode validate --config-yaml` does; it returns the errors herald
// would print.
type Validator func(yaml string) error

// CheckExamples checks that every extension README has at least one fenced
// ```yaml block and that each such block is a complete bootstrap validate
// accepts. Folders without a README are left to CheckReadmes.
func CheckExamples(fsys fs.FS, validate Validator) ([]Problem, error) {
	dirs, err := ExtensionDirs(fsys)
	if err != nil {
		return nil, err
	}
	var probs []Problem
	for _, dir := range dirs {
		file := path.Join(dir, ReadmeName)
		r, ok, err := readReadme(fsys, dir)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if len(r.YAML) == 0 {
			probs = append(probs, Problem{Path: file, Msg: "no ```yaml example bootstrap"})
		}
		for _, b := range r.YAML {
			if err := validate(b.Text); err != nil {
				probs = append(probs, Problem{Path: file, Line: b.Line,
					Msg: "yaml example is not a bootstrap herald accepts:\n\t" + strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "\n\t")})
			}
		}
	}
	return probs, nil
}

// GoPackageOf returns the Go import path of the generated package that
// holds the message of a type URL, and false when the URL names no known
// message.
type GoPackageOf func(typeURL string) (string, bool)

// CheckReadmeOwnership checks that each type URL an extension README lists
// belongs to that folder: the folder's non-test Go files import the
// generated package of the URL's message. It catches a README copied from
// another extension, which CheckReadmes cannot see when both URLs are
// registered.
func CheckReadmeOwnership(fsys fs.FS, goPackage GoPackageOf) ([]Problem, error) {
	dirs, err := ExtensionDirs(fsys)
	if err != nil {
		return nil, err
	}
	var probs []Problem
	for _, dir := range dirs {
		file := path.Join(dir, ReadmeName)
		r, ok, err := readReadme(fsys, dir)
		if err != nil {
			return nil, err
		}
		if !ok || len(r.TypeURLs) == 0 {
			continue
		}
		imported, err := folderImports(fsys, dir)
		if err != nil {
			return nil, err
		}
		for _, l := range r.TypeURLs {
			pkg, ok := goPackage(l.URL)
			switch {
			case !ok:
				probs = append(probs, Problem{Path: file, Line: l.Line,
					Msg: fmt.Sprintf("Type URLs lists %s, which names no known proto message", l.URL)})
			case !imported[pkg]:
				probs = append(probs, Problem{Path: file, Line: l.Line,
					Msg: fmt.Sprintf("Type URLs lists %s, but %s does not import its package %s", l.URL, dir, pkg)})
			}
		}
	}
	return probs, nil
}

// folderImports returns the import paths of the non-test Go files directly
// in dir.
func folderImports(fsys fs.FS, dir string) (map[string]bool, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() || !isSource(e.Name()) {
			continue
		}
		specs, err := imports(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		for _, is := range specs {
			out[is.path] = true
		}
	}
	return out, nil
}
