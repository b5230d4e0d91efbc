package bootstrap

import (
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Validate runs the generated ValidateAll of m and of every message packed
// in a google.protobuf.Any inside it, at any depth: the generated code checks
// an Any's type URL but never looks inside (Envoy validates each typed_config
// when its factory loads it, MessageUtil::anyConvertAndValidate). Errors come
// back as a configerr.List with paths in the YAML spelling, positioned with
// idx (nil is allowed).
func Validate(m proto.Message, idx *Index) error {
	v := &validation{idx: idx}
	v.message(m, "")
	return v.errs.Err()
}

type validation struct {
	idx  *Index
	errs configerr.List
}

type validatorAll interface{ ValidateAll() error }

// message validates m (found at path) and the Anys inside it.
func (v *validation) message(m proto.Message, path string) {
	if va, ok := m.(validatorAll); ok {
		if err := va.ValidateAll(); err != nil {
			v.convert(err, m.ProtoReflect().Descriptor(), path)
		}
	}
	v.anys(m.ProtoReflect(), path)
}

// anys finds every populated Any field under m and validates its content.
func (v *validation) anys(m protoreflect.Message, path string) {
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		fpath := joinPath(path, string(fd.Name()))
		switch {
		case fd.IsList():
			l := val.List()
			for i := 0; i < l.Len(); i++ {
				v.nested(l.Get(i).Message(), fpath+"["+itoa(i)+"]")
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			val.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				v.nested(mv.Message(), fpath+"["+k.String()+"]")
				return true
			})
		default:
			v.nested(val.Message(), fpath)
		}
		return true
	})
}

// nested handles one message value: an Any is unpacked and validated,
// anything else searched further for Anys.
func (v *validation) nested(m protoreflect.Message, path string) {
	if m.Descriptor().FullName() != "google.protobuf.Any" {
		v.anys(m, path)
		return
	}
	a, ok := m.Interface().(*anypb.Any)
	if !ok || (a.GetTypeUrl() == "" && len(a.GetValue()) == 0) {
		return // an empty Any ({}) holds nothing to validate
	}
	inner, err := anypb.UnmarshalNew(a, proto.UnmarshalOptions{})
	if err != nil {
		v.add(joinPath(path, "@type"), "cannot unpack "+a.GetTypeUrl()+": "+err.Error(), "")
		return
	}
	v.message(inner, path)
}

// validationError is what protoc-gen-validate generates for each message
// (e.g. ClusterValidationError); multiError is its ClusterMultiError.
type validationError interface {
	Field() string
	Reason() string
	Cause() error
	Key() bool
	ErrorName() string
}

type multiError interface{ AllErrors() []error }

// convert turns a generated validation error for a message of type md found
// at path into FieldErrors, following the cause chain down through embedded
// messages and mapping Go field names (Clusters[0]) to proto names
// (clusters[0]) with the descriptors.
func (v *validation) convert(err error, md protoreflect.MessageDescriptor, path string) {
	if me, ok := err.(multiError); ok {
		for _, e := range me.AllErrors() {
			v.convert(e, md, path)
		}
		return
	}
	ve, ok := err.(validationError)
	if !ok {
		v.add(path, err.Error(), "")
		return
	}
	seg, fd, od := fieldSegment(md, ve.Field())
	fpath := joinPath(path, seg)
	cause := ve.Cause()
	if cause != nil && fd != nil && fd.Message() != nil {
		if _, isVE := cause.(validationError); isVE || isMulti(cause) {
			nextMD := fd.Message()
			if fd.IsMap() {
				nextMD = fd.MapValue().Message()
			}
			if nextMD != nil {
				v.convert(cause, nextMD, fpath)
				return
			}
		}
	}
	msg := ve.Reason()
	if cause != nil {
		msg += ": " + cause.Error()
	}
	hint := ""
	if od != nil {
		hint = "set one of " + oneofList(od)
	}
	v.add(fpath, msg, hint)
}

func isMulti(err error) bool {
	_, ok := err.(multiError)
	return ok
}

func (v *validation) add(path, msg, hint string) {
	e := &configerr.FieldError{Path: path, Msg: msg, Hint: hint}
	if v.idx != nil {
		e.Pos = v.idx.locate(path)
	}
	v.errs = append(v.errs, e)
}

// fieldSegment maps a generated Field() ("Clusters[0]", "ConnectTimeout",
// "TypedPerFilterConfig[envoy.filters.http.buffer]", or a oneof name) of a
// message of type md to the path segment in proto names and the field (or
// oneof) it names.
func fieldSegment(md protoreflect.MessageDescriptor, goField string) (string, protoreflect.FieldDescriptor, protoreflect.OneofDescriptor) {
	base, suffix := goField, ""
	if i := strings.IndexByte(goField, '['); i >= 0 {
		base, suffix = goField[:i], goField[i:]
	}
	want := foldName(base)
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		if fd := fields.Get(i); foldName(string(fd.Name())) == want {
			return string(fd.Name()) + suffix, fd, nil
		}
	}
	oneofs := md.Oneofs()
	for i := 0; i < oneofs.Len(); i++ {
		if od := oneofs.Get(i); foldName(string(od.Name())) == want {
			return string(od.Name()) + suffix, nil, od
		}
	}
	return snakeCase(base) + suffix, nil, nil
}

// foldName makes a proto name and its generated Go name compare equal:
// "max_request_bytes" and "MaxRequestBytes" both fold to "maxrequestbytes".
func foldName(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

// snakeCase is the fallback for a Go name no descriptor field matches.
func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('_')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }
