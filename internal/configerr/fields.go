package configerr

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// NotSupported is the message for valid Envoy config herald does not
// implement (STYLE.md §5: never a silent downgrade).
const NotSupported = "not supported by herald yet"

// CheckFields returns an error for every field set in m whose name is not in
// allowed, at path + "." + field, with the message NotSupported: herald
// rejects what it does not implement instead of ignoring it. Fields added to
// Envoy's protos later are caught too, since the check walks the message,
// not a deny-list. Errors come in field-number order.
func CheckFields(m proto.Message, path string, allowed ...string) List {
	var out List
	for _, fd := range unlisted(m, allowed) {
		out = append(out, At(path+"."+string(fd.Name()), NotSupported))
	}
	return out
}

// RejectUnlisted is CheckFields with messages that name the field and,
// when issues has it, the issue that will implement it:
// "rds is not supported by herald yet (#7)".
func RejectUnlisted(m proto.Message, path string, issues map[string]string, allowed ...string) List {
	var out List
	for _, fd := range unlisted(m, allowed) {
		name := string(fd.Name())
		msg := name + " is " + NotSupported
		if is := issues[name]; is != "" {
			msg += " (" + is + ")"
		}
		out = append(out, &FieldError{Path: path + "." + name, Msg: msg})
	}
	return out
}

// unlisted returns the set fields of m not named in allowed, by number.
func unlisted(m proto.Message, allowed []string) []protoreflect.FieldDescriptor {
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil
	}
	var fds []protoreflect.FieldDescriptor
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !slices.Contains(allowed, string(fd.Name())) {
			fds = append(fds, fd)
		}
		return true
	})
	// Range visits fields in an undefined order.
	slices.SortFunc(fds, func(a, b protoreflect.FieldDescriptor) int { return int(a.Number()) - int(b.Number()) })
	return fds
}
