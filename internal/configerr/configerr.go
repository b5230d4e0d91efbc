// Package configerr is the one error type of config loading: a field path in
// the YAML spelling ("static_resources.clusters[0].lb_policy"), the position
// of that field in its file, what is wrong, and a hint. Every stage (parse,
// validate, cross-check, snapshot build) reports with it, so a user always
// reads "file:line:col: path: message (hint)".
//
// It imports nothing of herald's.
package configerr

import (
	"errors"
	"fmt"
	"strings"
)

// Pos is a position in a config file. Line and Col are 1-based; zero means
// unknown.
type Pos struct {
	File string
	Line int
	Col  int
}

// String formats p as "file:line:col", dropping unknown parts.
func (p Pos) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ":%d", p.Col)
		}
	}
	return b.String()
}

// FieldError is one problem at one field.
type FieldError struct {
	// Path is the field path in the YAML spelling, e.g.
	// "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config".
	Path string
	// Pos is where Path is in the file; filled in by Locate when unknown.
	Pos Pos
	// Msg says what is wrong, lowercase, no trailing punctuation.
	Msg string
	// Hint, when set, says how to fix it ("did you mean ROUND_ROBIN?").
	Hint string
}

// Error formats "file:line:col: path: msg (hint)".
func (e *FieldError) Error() string {
	var b strings.Builder
	if p := e.Pos.String(); p != "" {
		b.WriteString(p)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// At returns a FieldError for path.
func At(path, format string, args ...any) *FieldError {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// WithHint sets the hint and returns e.
func (e *FieldError) WithHint(format string, args ...any) *FieldError {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// List is every error of one load, in file order.
type List []*FieldError

// Error joins the errors one per line.
func (l List) Error() string {
	parts := make([]string, len(l))
	for i, e := range l {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Err returns l as an error, or nil when empty.
func (l List) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Locator finds the position of a field path; bootstrap's position index
// implements it.
type Locator interface {
	Locate(path string) (Pos, bool)
}

// Collect flattens err into FieldErrors: a List, a *FieldError, or a plain
// error (which becomes a FieldError at the given path). Positions unknown to
// an error are looked up with loc, walking up the path until a parent is found.
func Collect(err error, path string, loc Locator) List {
	if err == nil {
		return nil
	}
	var out List
	var l List
	var fe *FieldError
	switch {
	case errors.As(err, &l):
		out = append(out, l...)
	case errors.As(err, &fe):
		out = append(out, fe)
	default:
		out = append(out, &FieldError{Path: path, Msg: err.Error()})
	}
	if loc != nil {
		for _, e := range out {
			if e.Pos.Line == 0 {
				e.Pos = LocateNearest(loc, e.Path, e.Pos.File)
			}
		}
	}
	return out
}

// LocateNearest returns the position of path, or of its nearest ancestor that
// the locator knows; file is kept when the locator knows nothing.
func LocateNearest(loc Locator, path, file string) Pos {
	for p := path; p != ""; p = parent(p) {
		if pos, ok := loc.Locate(p); ok {
			return pos
		}
	}
	return Pos{File: file}
}

// parent strips the last element of a field path: "a.b[2].c" → "a.b[2]" → "a.b" → "a" → "".
func parent(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}
