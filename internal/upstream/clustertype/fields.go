package clustertype

import (
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-proxy/herald/internal/configerr"
)

// NotSupported is the message for valid Envoy config herald does not
// implement (STYLE.md §5: never a silent downgrade).
const NotSupported = "not supported by herald yet"

// CheckFields returns an error for every field set in m whose name is not in
// allowed, at path + "." + field: herald rejects what it does not implement
// instead of ignoring it. Fields added to Envoy's protos later are caught
// too, since the check walks the message, not a list.
func CheckFields(m proto.Message, path string, allowed ...string) configerr.List {
	var out configerr.List
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil
	}
	r.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := string(fd.Name())
		if !slices.Contains(allowed, name) {
			out = append(out, configerr.At(path+"."+name, NotSupported))
		}
		return true
	})
	// Range visits fields in an undefined order; report in field-number order.
	slices.SortFunc(out, func(a, b *configerr.FieldError) int {
		return fieldNumber(r, a.Path) - fieldNumber(r, b.Path)
	})
	return out
}

func fieldNumber(r protoreflect.Message, path string) int {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '.' {
			path = path[i+1:]
			break
		}
	}
	if fd := r.Descriptor().Fields().ByName(protoreflect.Name(path)); fd != nil {
		return int(fd.Number())
	}
	return 0
}
