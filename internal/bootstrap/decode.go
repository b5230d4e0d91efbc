package bootstrap

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// maxNodes bounds the YAML nodes one decode visits, counting every expansion
// of an alias, so a "billion laughs" document fails instead of exhausting
// memory. Real bootstraps have thousands, large generated ones a few
// hundred thousand. The JSON written is bounded too (maxExpansion).
const maxNodes = 1 << 22

// maxExpansion bounds the JSON written to this many times the input size
// (plus 1 MiB): only aliases make it larger than the YAML.
const maxExpansion = 16

// decoder walks a YAML node tree along a proto message descriptor. It writes
// the proto3 JSON of the message (field names canonical, enum names
// canonical, no !ignore keys) for protojson, records the position of every
// field path in the index, and collects every problem it finds instead of
// stopping at the first, which protojson alone would do.
//
// This mirrors Envoy's loader: YAML → JSON → JSON parser with
// case_insensitive_enum_parsing and no unknown fields
// (source/common/protobuf/yaml_utility.cc, MessageUtil::loadFromJson).
type decoder struct {
	file  string
	idx   *Index
	errs  configerr.List
	nodes int
	// out is the JSON being written and limit its bound in bytes.
	out   *bytes.Buffer
	limit int
}

func (d *decoder) pos(n *yaml.Node) configerr.Pos {
	return configerr.Pos{File: d.file, Line: n.Line, Col: n.Column}
}

func (d *decoder) fail(n *yaml.Node, path, hint, format string, args ...any) {
	e := configerr.At(path, format, args...)
	e.Hint = hint
	e.Pos = d.pos(n)
	d.errs = append(d.errs, e)
}

// record remembers where path is: the value for scalars, the key otherwise.
func (d *decoder) record(path string, key, val *yaml.Node) {
	n := val
	if key != nil && val.Kind != yaml.ScalarNode {
		n = key
	}
	d.idx.pos[path] = d.pos(n)
}

// deref follows aliases and counts the node against maxNodes.
func (d *decoder) deref(n *yaml.Node) (*yaml.Node, bool) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.nodes++
	if d.nodes > maxNodes || d.out != nil && d.out.Len() > d.limit {
		if d.nodes < maxNodes+1<<30 {
			d.fail(n, "", "", "document expands too much (aliases nested too deep?)")
			d.nodes = maxNodes + 1<<30
		}
		return n, false
	}
	return n, true
}

// decodeMessage decodes doc (a document node parsed from size bytes) into
// JSON for md.
func (d *decoder) decodeMessage(doc *yaml.Node, size int, md protoreflect.MessageDescriptor) []byte {
	var out bytes.Buffer
	d.out, d.limit = &out, maxExpansion*size+1<<20
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind == 0 || n.Kind == yaml.DocumentNode || isNull(n) {
		// Envoy: "Unable to convert YAML as JSON" for anything but a mapping.
		d.fail(n, "", "", "config is empty")
		return nil
	}
	n, ok := d.deref(n)
	if !ok {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, "", "", "expected a mapping of %s fields, got %s", md.FullName(), describe(n))
		return nil
	}
	d.message(n, md, "", &out)
	return out.Bytes()
}

// message writes the JSON of a message of type md held in n.
func (d *decoder) message(n *yaml.Node, md protoreflect.MessageDescriptor, path string, out *bytes.Buffer) {
	switch md.FullName() {
	case "google.protobuf.Any":
		d.anyMessage(n, path, out)
		return
	case "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.FieldMask":
		d.stringWKT(n, md, path, out)
		return
	case "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue":
		d.structValue(n, md, path, out)
		return
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		d.scalar(n, md.Fields().ByName("value"), path, out)
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "", "expected a mapping of %s fields, got %s", md.FullName(), describe(n))
		out.WriteString("{}")
		return
	}
	out.WriteByte('{')
	d.fields(n, md, path, out, false)
	out.WriteByte('}')
}

// fields writes the fields of mapping n as members of a JSON object (without
// braces); with wrote set, a comma goes before the first member.
func (d *decoder) fields(n *yaml.Node, md protoreflect.MessageDescriptor, path string, out *bytes.Buffer, wrote bool) {
	seen := map[protoreflect.FieldNumber]*yaml.Node{}
	oneofs := map[protoreflect.FullName]protoreflect.FieldDescriptor{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Tag == "!ignore" {
			// Envoy drops keys tagged !ignore; they carry YAML anchors.
			continue
		}
		k, ok := d.deref(k)
		if !ok {
			return
		}
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "", "expected a field name, got %s", describe(k))
			continue
		}
		name := k.Value
		fd := md.Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			fd = md.Fields().ByJSONName(name)
		}
		if fd == nil {
			d.unknownField(k, md, joinPath(path, name))
			continue
		}
		fpath := joinPath(path, string(fd.Name()))
		if first, dup := seen[fd.Number()]; dup {
			d.fail(k, fpath, "first set at "+d.pos(first).String(), "field set twice")
			continue
		}
		seen[fd.Number()] = k
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if other, dup := oneofs[od.FullName()]; dup {
				d.fail(k, fpath, "set only one of "+oneofList(od), "%s is already set, and both belong to oneof %s", other.Name(), od.Name())
				continue
			}
			oneofs[od.FullName()] = fd
		}
		val, ok := d.deref(v)
		if !ok {
			return
		}
		if isNull(val) && !isValueField(fd) {
			// proto3 JSON: null means the field is not set.
			d.record(fpath, k, v)
			continue
		}
		if wrote {
			out.WriteByte(',')
		}
		wrote = true
		writeString(out, fd.JSONName())
		out.WriteByte(':')
		d.record(fpath, k, v)
		d.value(val, fd, fpath, out)
	}
}

// value writes the JSON value of field fd held in v.
func (d *decoder) value(v *yaml.Node, fd protoreflect.FieldDescriptor, path string, out *bytes.Buffer) {
	switch {
	case fd.IsList():
		if v.Kind != yaml.SequenceNode {
			d.fail(v, path, "", "expected a list, got %s", describe(v))
			out.WriteString("[]")
			return
		}
		d.idx.lists[path] = len(v.Content)
		out.WriteByte('[')
		for i, e := range v.Content {
			if i > 0 {
				out.WriteByte(',')
			}
			epath := path + "[" + strconv.Itoa(i) + "]"
			d.record(epath, e, e)
			e, ok := d.deref(e)
			if !ok {
				out.WriteString("null")
				continue
			}
			d.single(e, fd, epath, out)
		}
		out.WriteByte(']')
	case fd.IsMap():
		if v.Kind != yaml.MappingNode {
			d.fail(v, path, "", "expected a mapping, got %s", describe(v))
			out.WriteString("{}")
			return
		}
		out.WriteByte('{')
		wrote := false
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, e := v.Content[i], v.Content[i+1]
			if k.Tag == "!ignore" {
				continue
			}
			k, ok := d.deref(k)
			if !ok {
				break
			}
			key, ok := d.mapKey(k, fd.MapKey(), path)
			if !ok {
				continue
			}
			epath := path + "[" + key + "]"
			if first, dup := seen[key]; dup {
				d.fail(k, epath, "first set at "+d.pos(first).String(), "map key set twice")
				continue
			}
			seen[key] = k
			d.record(epath, k, e)
			e, ok = d.deref(e)
			if !ok {
				break
			}
			if wrote {
				out.WriteByte(',')
			}
			wrote = true
			writeString(out, key)
			out.WriteByte(':')
			d.single(e, fd.MapValue(), epath, out)
		}
		out.WriteByte('}')
	default:
		d.single(v, fd, path, out)
	}
}

// mapKey checks a map key against the key kind and returns its canonical text.
func (d *decoder) mapKey(k *yaml.Node, kd protoreflect.FieldDescriptor, path string) (string, bool) {
	if k.Kind != yaml.ScalarNode || isNull(k) {
		d.fail(k, path, "", "expected a map key, got %s", describe(k))
		return "", false
	}
	switch kd.Kind() {
	case protoreflect.StringKind:
		return k.Value, true
	case protoreflect.BoolKind:
		if b, ok := parseBool(k); ok {
			return strconv.FormatBool(b), true
		}
		d.fail(k, path, "", "map key %q is not a bool", k.Value)
		return "", false
	default:
		var buf bytes.Buffer
		n := len(d.errs)
		d.scalar(k, kd, path, &buf)
		if len(d.errs) > n {
			return "", false
		}
		return strings.Trim(buf.String(), `"`), true
	}
}

// single writes one (non-list) value of field fd.
func (d *decoder) single(v *yaml.Node, fd protoreflect.FieldDescriptor, path string, out *bytes.Buffer) {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		if isNull(v) && fd.Message().FullName() != "google.protobuf.Value" {
			// A null list element or map value is an empty message.
			out.WriteString("{}")
			return
		}
		d.message(v, fd.Message(), path, out)
		return
	}
	d.scalar(v, fd, path, out)
}

// scalar writes the JSON of a scalar or enum field held in v.
func (d *decoder) scalar(v *yaml.Node, fd protoreflect.FieldDescriptor, path string, out *bytes.Buffer) {
	if v.Kind != yaml.ScalarNode {
		d.fail(v, path, "", "expected %s, got %s", kindName(fd), describe(v))
		out.WriteString("null")
		return
	}
	tag := v.ShortTag()
	quoted := v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	switch fd.Kind() {
	case protoreflect.StringKind:
		if !quoted && (tag == "!!int" || tag == "!!float" || tag == "!!bool") {
			// Envoy turns such a scalar into a JSON number or bool, which the
			// JSON parser then rejects for a string field.
			d.fail(v, path, fmt.Sprintf("quote it: %q", v.Value), "expected a string, got %s", describe(v))
			out.WriteString(`""`)
			return
		}
		writeString(out, v.Value)
	case protoreflect.BytesKind:
		if _, err := decodeBase64(v.Value); err != nil {
			d.fail(v, path, "", "expected base64 bytes, got %q", v.Value)
			out.WriteString(`""`)
			return
		}
		writeString(out, v.Value)
	case protoreflect.BoolKind:
		b, ok := parseBool(v)
		if !ok {
			d.fail(v, path, "", "expected true or false, got %s", describe(v))
		}
		out.WriteString(strconv.FormatBool(b))
	case protoreflect.EnumKind:
		d.enum(v, fd.Enum(), path, out)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		d.integer(v, path, math.MinInt32, math.MaxInt32, "int32", out)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		d.integer(v, path, math.MinInt64, math.MaxInt64, "int64", out)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		d.unsigned(v, path, math.MaxUint32, "uint32", out)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		d.unsigned(v, path, math.MaxUint64, "uint64", out)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		d.float(v, path, fd.Kind() == protoreflect.FloatKind, out)
	default:
		d.fail(v, path, "", "unsupported field kind %s", fd.Kind())
		out.WriteString("null")
	}
}

// enum writes an enum value. Like Envoy's JSON parser
// (case_insensitive_enum_parsing), a name that does not match exactly is
// retried in upper case; numbers are accepted as in proto3 JSON.
func (d *decoder) enum(v *yaml.Node, ed protoreflect.EnumDescriptor, path string, out *bytes.Buffer) {
	if ed.FullName() == "google.protobuf.NullValue" && isNull(v) {
		out.WriteString("null")
		return
	}
	quoted := v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	if !quoted && v.ShortTag() == "!!int" {
		n, err := strconv.ParseInt(v.Value, 0, 32)
		if err != nil {
			d.fail(v, path, "", "enum number %s out of range", v.Value)
			out.WriteString("0")
			return
		}
		out.WriteString(strconv.FormatInt(n, 10))
		return
	}
	vals := ed.Values()
	ev := vals.ByName(protoreflect.Name(v.Value))
	if ev == nil {
		ev = vals.ByName(protoreflect.Name(strings.ToUpper(v.Value)))
	}
	if ev == nil {
		names := make([]string, vals.Len())
		for i := range names {
			names[i] = string(vals.Get(i).Name())
		}
		hint := ""
		if s := configerr.Suggest(v.Value, names); s != "" {
			hint = "did you mean " + s + "?"
		}
		d.fail(v, path, hint, "unknown value %q", v.Value)
		out.WriteString("0")
		return
	}
	writeString(out, string(ev.Name()))
}

func (d *decoder) integer(v *yaml.Node, path string, lo, hi int64, kind string, out *bytes.Buffer) {
	s := v.Value
	n, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 0, 64)
	if err != nil || v.ShortTag() != "!!int" && !isDecimal(s) {
		if e, ok := err.(*strconv.NumError); ok && e.Err == strconv.ErrRange {
			d.fail(v, path, "", "value %s out of range for %s", s, kind)
		} else {
			d.fail(v, path, "", "expected an integer, got %s", describe(v))
		}
		out.WriteString("0")
		return
	}
	if n < lo || n > hi {
		d.fail(v, path, "", "value %s out of range for %s", s, kind)
		out.WriteString("0")
		return
	}
	writeString(out, strconv.FormatInt(n, 10))
}

func (d *decoder) unsigned(v *yaml.Node, path string, hi uint64, kind string, out *bytes.Buffer) {
	s := v.Value
	if strings.HasPrefix(s, "-") {
		if _, err := strconv.ParseInt(s, 0, 64); err == nil {
			d.fail(v, path, "", "value %s out of range for %s", s, kind)
			out.WriteString("0")
			return
		}
	}
	n, err := strconv.ParseUint(strings.ReplaceAll(s, "_", ""), 0, 64)
	if err != nil || v.ShortTag() != "!!int" && !isDecimal(s) {
		if e, ok := err.(*strconv.NumError); ok && e.Err == strconv.ErrRange {
			d.fail(v, path, "", "value %s out of range for %s", s, kind)
		} else {
			d.fail(v, path, "", "expected an integer, got %s", describe(v))
		}
		out.WriteString("0")
		return
	}
	if n > hi {
		d.fail(v, path, "", "value %s out of range for %s", s, kind)
		out.WriteString("0")
		return
	}
	writeString(out, strconv.FormatUint(n, 10))
}

func (d *decoder) float(v *yaml.Node, path string, single bool, out *bytes.Buffer) {
	var f float64
	switch s := v.Value; {
	case s == "NaN" || s == "Infinity" || s == "-Infinity":
		writeString(out, s)
		return
	case v.ShortTag() == "!!float" || v.ShortTag() == "!!int" || isNumber(s):
		if err := v.Decode(&f); err != nil {
			var perr error
			f, perr = strconv.ParseFloat(s, 64)
			if perr != nil {
				d.fail(v, path, "", "expected a number, got %s", describe(v))
				out.WriteString("0")
				return
			}
		}
	default:
		d.fail(v, path, "", "expected a number, got %s", describe(v))
		out.WriteString("0")
		return
	}
	switch {
	case math.IsNaN(f):
		writeString(out, "NaN")
	case math.IsInf(f, 1):
		writeString(out, "Infinity")
	case math.IsInf(f, -1):
		writeString(out, "-Infinity")
	case single && math.Abs(f) > math.MaxFloat32:
		d.fail(v, path, "", "value %s out of range for float", v.Value)
		out.WriteString("0")
	default:
		out.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
	}
}

// stringWKT handles Duration, Timestamp and FieldMask, whose JSON is a string.
func (d *decoder) stringWKT(v *yaml.Node, md protoreflect.MessageDescriptor, path string, out *bytes.Buffer) {
	var hint string
	var msg interface{ ProtoReflect() protoreflect.Message }
	switch md.FullName() {
	case "google.protobuf.Duration":
		msg, hint = &durationpb.Duration{}, `seconds with an "s" suffix, e.g. "1.5s"`
	case "google.protobuf.Timestamp":
		msg, hint = &timestamppb.Timestamp{}, `RFC 3339, e.g. "2024-01-02T15:04:05Z"`
	default:
		msg, hint = &fieldmaskpb.FieldMask{}, `comma-separated lowerCamel paths, e.g. "fooBar,baz"`
	}
	what := strings.ToLower(string(md.Name()))
	if v.Kind != yaml.ScalarNode || isNull(v) {
		d.fail(v, path, hint, "expected a %s, got %s", what, describe(v))
		out.WriteString("null")
		return
	}
	var js bytes.Buffer
	writeString(&js, v.Value)
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js.Bytes(), msg.ProtoReflect().Interface()); err != nil {
		d.fail(v, path, hint, "invalid %s %q", what, v.Value)
		out.WriteString("null")
		return
	}
	out.Write(js.Bytes())
}

// structValue writes a Struct, Value or ListValue: any YAML, as JSON.
func (d *decoder) structValue(v *yaml.Node, md protoreflect.MessageDescriptor, path string, out *bytes.Buffer) {
	switch {
	case md.FullName() == "google.protobuf.Struct" && v.Kind != yaml.MappingNode:
		d.fail(v, path, "", "expected a mapping, got %s", describe(v))
		out.WriteString("{}")
		return
	case md.FullName() == "google.protobuf.ListValue" && v.Kind != yaml.SequenceNode:
		d.fail(v, path, "", "expected a list, got %s", describe(v))
		out.WriteString("[]")
		return
	}
	d.generic(v, path, out)
}

// generic writes any YAML node as JSON, the way Envoy's parseYamlNode types
// plain scalars (bool, integer, float, else string).
func (d *decoder) generic(v *yaml.Node, path string, out *bytes.Buffer) {
	switch v.Kind {
	case yaml.MappingNode:
		out.WriteByte('{')
		wrote := false
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, e := v.Content[i], v.Content[i+1]
			if k.Tag == "!ignore" {
				continue
			}
			k, ok := d.deref(k)
			if !ok {
				break
			}
			if k.Kind != yaml.ScalarNode {
				d.fail(k, path, "", "expected a string key, got %s", describe(k))
				continue
			}
			epath := joinPath(path, k.Value)
			d.record(epath, k, e)
			e, ok = d.deref(e)
			if !ok {
				break
			}
			if wrote {
				out.WriteByte(',')
			}
			wrote = true
			writeString(out, k.Value)
			out.WriteByte(':')
			d.generic(e, epath, out)
		}
		out.WriteByte('}')
	case yaml.SequenceNode:
		out.WriteByte('[')
		for i, e := range v.Content {
			if i > 0 {
				out.WriteByte(',')
			}
			epath := path + "[" + strconv.Itoa(i) + "]"
			d.record(epath, e, e)
			e, ok := d.deref(e)
			if !ok {
				out.WriteString("null")
				continue
			}
			d.generic(e, epath, out)
		}
		out.WriteByte(']')
	case yaml.ScalarNode:
		quoted := v.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
		switch tag := v.ShortTag(); {
		case quoted || tag == "!!str" || tag == "!!timestamp" || tag == "!!binary":
			writeString(out, v.Value)
		case tag == "!!null":
			out.WriteString("null")
		case tag == "!!bool":
			b, _ := parseBool(v)
			out.WriteString(strconv.FormatBool(b))
		case tag == "!!int" || tag == "!!float":
			var f float64
			if err := v.Decode(&f); err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				d.fail(v, path, "", "number %s cannot be represented in a google.protobuf.Value", v.Value)
				out.WriteString("null")
				return
			}
			out.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		default:
			writeString(out, v.Value)
		}
	default:
		d.fail(v, path, "", "unexpected %s", describe(v))
		out.WriteString("null")
	}
}

// anyMessage writes a google.protobuf.Any: "@type" must name a registered
// message, whose fields follow in the same mapping.
func (d *decoder) anyMessage(n *yaml.Node, path string, out *bytes.Buffer) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "", "expected a mapping with \"@type\", got %s", describe(n))
		out.WriteString("null")
		return
	}
	var typeNode *yaml.Node
	body := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind == yaml.ScalarNode && k.Value == "@type" && k.Tag != "!ignore" {
			typeNode = n.Content[i+1]
			continue
		}
		body.Content = append(body.Content, k, n.Content[i+1])
	}
	if typeNode == nil && len(body.Content) == 0 {
		// An empty Any ({}), which Envoy accepts: e.g. a route's
		// FilterConfig with "config: {}" enables a filter disabled in
		// http_filters.
		out.WriteString("{}")
		return
	}
	if typeNode == nil {
		d.fail(n, path, `add "@type: type.googleapis.com/<message>"`, "missing \"@type\"")
		out.WriteString("null")
		return
	}
	tpath := joinPath(path, "@type")
	d.record(tpath, nil, typeNode)
	typeNode, ok := d.deref(typeNode)
	if !ok {
		return
	}
	url := typeNode.Value
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil || typeNode.Kind != yaml.ScalarNode {
		if v3, ok := legacyTypeURL(url); ok {
			d.fail(typeNode, path, "use "+v3, "v2 type %q is not supported in the v3 API", url)
		} else {
			d.fail(typeNode, path, suggestTypeURL(url), "unknown type %q", url)
		}
		out.WriteString("null")
		return
	}
	md := mt.Descriptor()
	out.WriteString(`{"@type":`)
	writeString(out, url)
	switch md.FullName() {
	case "google.protobuf.Any", "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.FieldMask",
		"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
		"google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		// proto3 JSON of an Any holding a well-known type: {"@type": ..., "value": <its JSON>}.
		for i := 0; i+1 < len(body.Content); i += 2 {
			k, v := body.Content[i], body.Content[i+1]
			if k.Tag == "!ignore" {
				continue
			}
			if k.Value != "value" {
				d.unknownField(k, md, joinPath(path, k.Value))
				continue
			}
			vpath := joinPath(path, "value")
			d.record(vpath, k, v)
			v, ok := d.deref(v)
			if !ok {
				return
			}
			out.WriteString(`,"value":`)
			d.message(v, md, vpath, out)
		}
	default:
		d.fields(body, md, path, out, true)
	}
	out.WriteByte('}')
}

// unknownField reports a key that is no field of md: a v2 field with its v3
// replacement, or the closest field name.
func (d *decoder) unknownField(k *yaml.Node, md protoreflect.MessageDescriptor, path string) {
	if repl, ok := legacyField(md.FullName(), k.Value); ok {
		d.fail(k, path, repl, "v2 field %q was removed in the v3 API", k.Value)
		return
	}
	fields := md.Fields()
	names := make([]string, 0, fields.Len())
	for i := 0; i < fields.Len(); i++ {
		names = append(names, string(fields.Get(i).Name()))
	}
	hint := ""
	if s := configerr.Suggest(k.Value, names); s != "" {
		hint = "did you mean " + s + "?"
	}
	d.fail(k, path, hint, "unknown field %q in %s", k.Value, md.FullName())
}

// suggestTypeURL returns "did you mean <url>?" for the registered message
// whose type URL is closest to url, or "".
func suggestTypeURL(url string) string {
	const prefix = "type.googleapis.com/"
	name := url[strings.LastIndexByte(url, '/')+1:]
	var names []string
	protoregistry.GlobalTypes.RangeMessages(func(mt protoreflect.MessageType) bool {
		names = append(names, string(mt.Descriptor().FullName()))
		return true
	})
	sort.Strings(names)
	if s := configerr.Suggest(name, names); s != "" {
		return "did you mean " + prefix + s + "?"
	}
	return ""
}

func oneofList(od protoreflect.OneofDescriptor) string {
	fs := od.Fields()
	names := make([]string, fs.Len())
	for i := range names {
		names[i] = string(fs.Get(i).Name())
	}
	return strings.Join(names, ", ")
}

// isValueField reports whether fd is a singular google.protobuf.Value, the
// one field where a JSON null is a value and not "unset".
func isValueField(fd protoreflect.FieldDescriptor) bool {
	return !fd.IsList() && !fd.IsMap() && fd.Message() != nil && fd.Message().FullName() == "google.protobuf.Value"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// parseBool accepts the spellings yaml-cpp decodes as bool (Envoy's YAML
// parser): true/false, yes/no, on/off, y/n, in lower, Title or UPPER case.
func parseBool(n *yaml.Node) (bool, bool) {
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return false, false
	}
	switch n.Value {
	case "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", "y", "Y":
		return true, true
	case "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", "n", "N":
		return false, true
	}
	return false, false
}

func isDecimal(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		_, err = strconv.ParseUint(s, 10, 64)
	}
	return err == nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("invalid base64")
}

// describe names what a node holds, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	case yaml.AliasNode:
		return "an alias"
	}
	quoted := n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	switch tag := n.ShortTag(); {
	case quoted:
		return fmt.Sprintf("string %q", n.Value)
	case tag == "!!null":
		return "null"
	case tag == "!!bool":
		return "bool " + n.Value
	case tag == "!!int" || tag == "!!float":
		return "number " + n.Value
	default:
		return fmt.Sprintf("string %q", n.Value)
	}
}

func kindName(fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return "a string"
	case protoreflect.BoolKind:
		return "true or false"
	case protoreflect.EnumKind:
		return "a value of " + string(fd.Enum().FullName())
	case protoreflect.BytesKind:
		return "base64 bytes"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "a number"
	default:
		return "an integer"
	}
}

func writeString(out *bytes.Buffer, s string) {
	b, _ := json.Marshal(s)
	out.Write(b)
}
