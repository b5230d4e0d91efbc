package accesslog

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/streaminfo"
)

// JSONOptions tunes NewJSONFormatter.
type JSONOptions struct {
	// Untyped renders every value as a JSON string, with "-" for unset
	// operators: the deprecated FileAccessLog.json_format. By default values
	// keep their types (numbers stay numbers, unset is null), as
	// SubstitutionFormatString.json_format and typed_json_format do.
	Untyped bool
	// OmitEmptyValues leaves out keys whose value is unset, and nested
	// objects left empty by that; the root object is always written.
	OmitEmptyValues bool
	// ContentType is reported by ContentType; "" means "application/json".
	ContentType string
}

type jsonKind uint8

const (
	jsonTemplate jsonKind = iota // a string with command operators
	jsonNumber                   // a number literal from the config
	jsonObject
	jsonList
)

// jsonNode is one compiled value of a json_format.
type jsonNode struct {
	kind jsonKind
	// parts is the template of a jsonTemplate; literals are pre-escaped.
	parts []op
	// num is the rendered jsonNumber.
	num string
	// keys are the pre-rendered `"key":` of a jsonObject, sorted, as Envoy
	// sorts properties (SubstitutionFormatString.json_format_options).
	keys     []string
	children []*jsonNode
}

// NewJSONFormatter compiles a json_format: each string value is a format
// string, nested objects and lists are kept, number literals are copied.
// Envoy accepts nothing else ("Only string values, nested structs, list
// values and number values are supported in structured access log format").
// A line is one JSON object followed by "\n".
func NewJSONFormatter(fields *structpb.Struct, opts JSONOptions) (*Formatter, error) {
	root, err := compileJSONObject(fields, "")
	if err != nil {
		return nil, err
	}
	return &Formatter{json: root, typed: !opts.Untyped, omitEmpty: opts.OmitEmptyValues, contentType: opts.ContentType}, nil
}

// JSONFieldError is a json_format value that cannot be compiled; Key is its
// dotted path inside json_format ("a.b[2]").
type JSONFieldError struct {
	Key string
	Err error
}

func (e *JSONFieldError) Error() string {
	return fmt.Sprintf("accesslog: json_format.%s: %v", e.Key, e.Err)
}

func (e *JSONFieldError) Unwrap() error { return e.Err }

func compileJSONObject(s *structpb.Struct, path string) (*jsonNode, error) {
	n := &jsonNode{kind: jsonObject}
	names := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		p := k
		if path != "" {
			p = path + "." + k
		}
		c, err := compileJSONValue(s.GetFields()[k], p)
		if err != nil {
			return nil, err
		}
		key := appendJSONEscaped([]byte{'"'}, k)
		n.keys = append(n.keys, string(append(key, '"', ':')))
		n.children = append(n.children, c)
	}
	return n, nil
}

func compileJSONValue(v *structpb.Value, path string) (*jsonNode, error) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		parts, err := parseFormat(k.StringValue, true)
		if err != nil {
			return nil, &JSONFieldError{Key: path, Err: err}
		}
		return &jsonNode{kind: jsonTemplate, parts: parts}, nil
	case *structpb.Value_NumberValue:
		if math.IsNaN(k.NumberValue) || math.IsInf(k.NumberValue, 0) {
			return nil, &JSONFieldError{Key: path, Err: fmt.Errorf("number is not finite")}
		}
		return &jsonNode{kind: jsonNumber, num: formatJSONNumber(k.NumberValue)}, nil
	case *structpb.Value_StructValue:
		return compileJSONObject(k.StructValue, path)
	case *structpb.Value_ListValue:
		n := &jsonNode{kind: jsonList}
		for i, e := range k.ListValue.GetValues() {
			c, err := compileJSONValue(e, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			n.children = append(n.children, c)
		}
		return n, nil
	}
	return nil, &JSONFieldError{Key: path, Err: fmt.Errorf(
		"only string values, nested structs, list values and number values are supported in structured access log format")}
}

// formatJSONNumber prints integers without a fraction, other numbers in
// their shortest form.
func formatJSONNumber(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func (f *Formatter) formatJSON(dst []byte, info *streaminfo.Info) []byte {
	dst, _ = f.appendJSONNode(dst, f.json, info, true)
	return append(dst, '\n')
}

// appendJSONNode appends n's value and reports whether it is null. A null
// value has been written as "null"; a parent that omits empty values cuts it
// off together with its key.
func (f *Formatter) appendJSONNode(dst []byte, n *jsonNode, info *streaminfo.Info, root bool) ([]byte, bool) {
	switch n.kind {
	case jsonNumber:
		return append(dst, n.num...), false
	case jsonObject:
		start := len(dst)
		dst = append(dst, '{')
		wrote := false
		for i, c := range n.children {
			mark := len(dst)
			if wrote {
				dst = append(dst, ',')
			}
			dst = append(dst, n.keys[i]...)
			var null bool
			dst, null = f.appendJSONNode(dst, c, info, false)
			if null && f.omitEmpty {
				dst = dst[:mark]
				continue
			}
			wrote = true
		}
		if !wrote && f.omitEmpty && !root {
			// Envoy 1.40: nested objects whose values are all omitted are
			// removed as well (SubstitutionFormatString.omit_empty_values).
			return append(dst[:start], "null"...), true
		}
		return append(dst, '}'), false
	case jsonList:
		dst = append(dst, '[')
		wrote := false
		for _, c := range n.children {
			mark := len(dst)
			if wrote {
				dst = append(dst, ',')
			}
			var null bool
			dst, null = f.appendJSONNode(dst, c, info, false)
			if null && f.omitEmpty {
				dst = dst[:mark]
				continue
			}
			wrote = true
		}
		// Empty arrays are preserved.
		return append(dst, ']'), false
	}
	return f.appendJSONTemplate(dst, n.parts, info)
}

// appendJSONTemplate writes a string value. A value that is exactly one
// operator keeps its type when typed (Envoy's formatValue); anything else is
// a string in which unset operators print "-" (or "" with omit_empty_values).
func (f *Formatter) appendJSONTemplate(dst []byte, parts []op, info *streaminfo.Info) ([]byte, bool) {
	if len(parts) == 1 && parts[0].code != opLiteral {
		mark := len(dst)
		dst = append(dst, '"')
		start := len(dst)
		var k valueKind
		dst, k = parts[0].appendValue(dst, info)
		switch {
		case k == valueUnset && (f.typed || f.omitEmpty):
			return append(dst[:mark], "null"...), true
		case k == valueUnset:
			return append(dst[:start], unsetValue+`"`...), false
		case k == valueNumber && f.typed:
			// Digits need no escaping: drop the opening quote.
			copy(dst[mark:], dst[start:])
			return dst[:len(dst)-1], false
		}
		dst = escapeTail(dst, start)
		return append(dst, '"'), false
	}
	dst = append(dst, '"')
	for i := range parts {
		p := &parts[i]
		if p.code == opLiteral {
			dst = append(dst, p.lit...)
			continue
		}
		start := len(dst)
		var k valueKind
		dst, k = p.appendValue(dst, info)
		if k == valueUnset {
			dst = dst[:start]
			if !f.omitEmpty {
				dst = append(dst, unsetValue...)
			}
			continue
		}
		dst = escapeTail(dst, start)
	}
	return append(dst, '"'), false
}

// escapeTail JSON-escapes dst[start:] in place. Values needing escapes are
// rare, so only that path copies.
func escapeTail(dst []byte, start int) []byte {
	for i := start; i < len(dst); {
		c := dst[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(dst[i:])
			if r == utf8.RuneError && size == 1 {
				return appendJSONEscaped(dst[:i], string(dst[i:]))
			}
			i += size
			continue
		}
		if c < 0x20 || c == '"' || c == '\\' {
			return appendJSONEscaped(dst[:i], string(dst[i:]))
		}
		i++
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendJSONEscaped appends s as the inside of a JSON string: quotes,
// backslashes and control characters escaped, invalid UTF-8 replaced by
// U+FFFD.
func appendJSONEscaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}
