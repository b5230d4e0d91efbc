package bootstrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// ConfigYAMLFile is the file name errors in the --config-yaml text carry.
const ConfigYAMLFile = "--config-yaml"

// Options says where the bootstrap comes from, as Envoy's command line does
// (https://www.envoyproxy.io/docs/envoy/latest/operations/cli).
type Options struct {
	// Path is the -c / --config-path file; empty when not given. Its
	// extension picks the format as in Envoy's MessageUtil::loadFromFile:
	// .yaml/.yml is YAML, .pb binary proto, .pb_text text proto, anything
	// else JSON (all case-insensitive).
	Path string
	// YAML is the --config-yaml text; empty when not given. Merged over the
	// file with proto MergeFrom semantics: scalars and singular messages
	// override, repeated fields are appended, map entries replace.
	YAML string
}

// Config is a loaded, validated bootstrap.
type Config struct {
	// Bootstrap is the merged bootstrap. Immutable after Load.
	Bootstrap *bootstrapv3.Bootstrap
	// Index locates field paths of Bootstrap in the file or --config-yaml.
	Index *Index
}

// Load reads, parses, merges, validates and cross-checks a bootstrap. On
// failure the error is a configerr.List with every problem found, in file
// order (the -c file first, then --config-yaml). Parse errors stop the load
// before validation: a half-parsed message would only add noise.
//
// Envoy: InstanceUtil::loadBootstrapConfig loads --config-path, loads
// --config-yaml into a second Bootstrap, calls bootstrap.MergeFrom(override)
// and then validates the result (source/server/server.cc).
func Load(opts Options) (*Config, error) {
	if opts.Path == "" && opts.YAML == "" {
		return nil, configerr.List{configerr.At("", "at least one of --config-path or --config-yaml should be non-empty")}
	}
	var (
		bs, over   *bootstrapv3.Bootstrap
		idx, ovIdx *Index
		errs       configerr.List
	)
	if opts.Path != "" {
		data, err := os.ReadFile(opts.Path)
		if err != nil {
			e := configerr.At("", "cannot read config: %v", unwrapPathError(err))
			e.Pos.File = opts.Path
			return nil, configerr.List{e}
		}
		bs, idx, err = Parse(opts.Path, data)
		errs = append(errs, configerr.Collect(err, "", idx)...)
	}
	if opts.YAML != "" {
		over = &bootstrapv3.Bootstrap{}
		var err error
		ovIdx, err = unmarshal(ConfigYAMLFile, []byte(opts.YAML), over, formatYAML)
		errs = append(errs, configerr.Collect(err, "", ovIdx)...)
	}
	if len(errs) > 0 {
		return nil, sortErrors(errs, opts.Path)
	}
	switch {
	case bs == nil:
		bs, idx = over, ovIdx
	case over != nil:
		proto.Merge(bs, over)
		idx = merged(idx, ovIdx)
	}
	errs = append(errs, configerr.Collect(Validate(bs, idx), "", idx)...)
	errs = append(errs, configerr.Collect(CrossCheck(bs, idx), "", idx)...)
	if len(errs) > 0 {
		return nil, sortErrors(errs, opts.Path)
	}
	return &Config{Bootstrap: bs, Index: idx}, nil
}

// Parse unmarshals a bootstrap from data, in the format file's extension
// names (see Options.Path), without validating it. On failure the error is
// a configerr.List with every parse problem of the file.
func Parse(file string, data []byte) (*bootstrapv3.Bootstrap, *Index, error) {
	bs := &bootstrapv3.Bootstrap{}
	idx, err := Unmarshal(file, data, bs)
	if err != nil {
		return nil, idx, err
	}
	return bs, idx, nil
}

// Unmarshal is Parse for any message (an xDS resource file, a single
// cluster): it fills m from data and returns the position index of m's
// field paths.
func Unmarshal(file string, data []byte, m proto.Message) (*Index, error) {
	return unmarshal(file, data, m, formatOf(file))
}

type format int

const (
	formatYAML format = iota
	formatJSON
	formatBinary
	formatText
)

// formatOf picks the format by extension like Envoy's MessageUtil::loadFromFile.
func formatOf(file string) format {
	f := strings.ToLower(file)
	switch {
	case strings.HasSuffix(f, ".pb"):
		return formatBinary
	case strings.HasSuffix(f, ".pb_text"):
		return formatText
	case strings.HasSuffix(f, ".yaml"), strings.HasSuffix(f, ".yml"):
		return formatYAML
	default:
		return formatJSON
	}
}

func unmarshal(file string, data []byte, m proto.Message, f format) (*Index, error) {
	idx := newIndex(file)
	atFile := func(format string, args ...any) error {
		e := configerr.At("", format, args...)
		e.Pos.File = file
		return configerr.List{e}
	}
	switch f {
	case formatBinary:
		if err := proto.Unmarshal(data, m); err != nil {
			return idx, atFile("cannot parse as a binary %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
		}
		return idx, nil
	case formatText:
		if err := prototext.Unmarshal(data, m); err != nil {
			return idx, atFile("cannot parse as a text %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
		}
		return idx, nil
	case formatJSON:
		// Envoy parses such a file with a JSON parser, so YAML-only syntax
		// is an error; valid JSON is valid YAML and decodes below.
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			e := configerr.At("", "invalid JSON: %v", err)
			e.Pos = jsonErrorPos(file, data, err)
			return idx, configerr.List{e}
		}
	}
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return idx, configerr.List{yamlError(file, err)}
	}
	d := &decoder{file: file, idx: idx}
	js := d.decodeMessage(&doc, len(data), m.ProtoReflect().Descriptor())
	if len(d.errs) > 0 {
		return idx, sortErrors(d.errs, file)
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, m); err != nil {
		// The decoder checks everything protojson does; reaching this is a
		// decoder bug, reported rather than hidden.
		return idx, atFile("internal error: decoded config rejected by protojson: %v", err)
	}
	return idx, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns a yaml.v3 syntax error into a FieldError at its line.
func yamlError(file string, err error) *configerr.FieldError {
	msg := err.Error()
	e := &configerr.FieldError{Pos: configerr.Pos{File: file}}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e.Pos.Line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	e.Msg = "invalid YAML: " + msg
	return e
}

// jsonErrorPos converts the byte offset of a JSON syntax error to line:col.
func jsonErrorPos(file string, data []byte, err error) configerr.Pos {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var off int64
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	default:
		return configerr.Pos{File: file}
	}
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	before := data[:off]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	if col < 1 {
		col = 1
	}
	return configerr.Pos{File: file, Line: line, Col: col}
}

// sortErrors orders errs by file (first the -c file, then the rest by name),
// line and column; errors without a line keep their order at the end.
func sortErrors(errs configerr.List, first string) configerr.List {
	rank := func(e *configerr.FieldError) (int, string) {
		if e.Pos.File == first {
			return 0, ""
		}
		return 1, e.Pos.File
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		ra, fa := rank(a)
		rb, fb := rank(b)
		if ra != rb {
			return ra < rb
		}
		if fa != fb {
			return fa < fb
		}
		if (a.Pos.Line == 0) != (b.Pos.Line == 0) {
			return b.Pos.Line == 0
		}
		if a.Pos.Line != b.Pos.Line {
			return a.Pos.Line < b.Pos.Line
		}
		return a.Pos.Col < b.Pos.Col
	})
	return errs
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
