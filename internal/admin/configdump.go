package admin

import (
	"fmt"
	nethttp "net/http"
	"regexp"
	"strings"

	"github.com/cncf/xds/go/udpa/annotations"
	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// serveConfigDump is Envoy's ConfigDumpHandler::handlerConfigDump
// (source/server/admin/config_dump_handler.cc): the whole dump, or with
// ?resource= the elements of one repeated field, each trimmed by ?mask=;
// ?name_regex= keeps the resources whose name fully matches; fields marked
// (udpa.annotations.sensitive) are redacted.
func (a *Admin) serveConfigDump(w nethttp.ResponseWriter, r *nethttp.Request) {
	q := r.URL.Query()
	var nameRe *regexp.Regexp
	if v := q.Get("name_regex"); v != "" {
		// Envoy compiles a google_re2 RegexMatcher, which matches the whole name.
		re, err := regexp.Compile(`^(?:` + v + `)$`)
		if err != nil {
			writeText(w, nethttp.StatusBadRequest,
				"INVALID_ARGUMENT: Error while parsing name_regex from "+v+": "+err.Error())
			return
		}
		nameRe = re
	}
	var mask []string
	_, hasMask := q["mask"]
	if hasMask {
		for _, p := range strings.Split(q.Get("mask"), ",") {
			if p != "" {
				mask = append(mask, p)
			}
		}
	}

	src, err := a.src.ConfigDump(has(q, "include_eds"))
	if err != nil {
		a.log.Error("admin: config dump", "error", err)
		writeText(w, nethttp.StatusInternalServerError, "admin: config dump: "+err.Error()+"\n")
		return
	}
	msgs := make([]protoreflect.Message, 0, len(src.GetConfigs()))
	for _, c := range src.GetConfigs() {
		m, err := c.UnmarshalNew()
		if err != nil {
			a.log.Error("admin: config dump", "error", err)
			writeText(w, nethttp.StatusInternalServerError, "admin: config dump: "+err.Error()+"\n")
			return
		}
		if nameRe != nil {
			filterByName(m.ProtoReflect(), nameRe)
		}
		msgs = append(msgs, m.ProtoReflect())
	}

	var (
		out    *adminv3.ConfigDump
		status int
		msg    string
	)
	if vs, ok := q["resource"]; ok {
		out, status, msg = dumpResource(msgs, vs[0], hasMask, mask)
	} else {
		out, status, msg = dumpAll(msgs, hasMask, q.Get("mask"), mask)
	}
	if msg != "" {
		writeText(w, status, msg)
		return
	}
	redact(out.ProtoReflect(), false)
	a.writeProto(w, jsonPretty, out)
}

// dumpResource is Envoy's addResourceToDump: the elements of the first
// repeated field called resource, each packed as its own Any.
func dumpResource(msgs []protoreflect.Message, resource string, hasMask bool, mask []string) (*adminv3.ConfigDump, int, string) {
	out := &adminv3.ConfigDump{}
	for _, m := range msgs {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(resource))
		if fd == nil {
			continue
		}
		if !fd.IsList() || fd.Message() == nil {
			return nil, nethttp.StatusBadRequest,
				fmt.Sprintf("%s is not a repeated field. Use ?mask=%s to get only this field", fd.Name(), fd.Name())
		}
		list := m.Get(fd).List()
		for i := 0; i < list.Len(); i++ {
			elem := list.Get(i).Message()
			if hasMask && !trimResource(elem, mask) {
				return nil, nethttp.StatusBadRequest, "FieldMask " + maskDebugString(mask) + " could not be successfully used."
			}
			packed, err := anypb.New(elem.Interface())
			if err != nil {
				return nil, nethttp.StatusInternalServerError, "admin: config dump: " + err.Error()
			}
			out.Configs = append(out.Configs, packed)
		}
		return out, nethttp.StatusOK, ""
	}
	return nil, nethttp.StatusNotFound, resource + " not found in config dump"
}

// dumpAll is Envoy's addAllConfigToDump: every config, masked configs the
// mask does not fit are left out.
func dumpAll(msgs []protoreflect.Message, hasMask bool, rawMask string, mask []string) (*adminv3.ConfigDump, int, string) {
	out := &adminv3.ConfigDump{}
	for _, m := range msgs {
		if hasMask && !trimChecked(m, mask) {
			continue
		}
		packed, err := anypb.New(m.Interface())
		if err != nil {
			return nil, nethttp.StatusInternalServerError, "admin: config dump: " + err.Error()
		}
		out.Configs = append(out.Configs, packed)
	}
	if hasMask && len(out.Configs) == 0 {
		return nil, nethttp.StatusBadRequest, "FieldMask " + rawMask + " could not be successfully applied to any configs."
	}
	return out, nethttp.StatusOK, ""
}

// maskDebugString renders a FieldMask as C++'s DebugString does.
func maskDebugString(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "paths: %q\n", p)
	}
	return b.String()
}

// filterByName drops, from every repeated message field of m, the elements
// whose resource name does not match re. The name is the element's own
// `name` (DynamicListener, secrets, scoped routes) or that of the resource
// inside its Any (Cluster.name, Listener.name, RouteConfiguration.name,
// ClusterLoadAssignment.cluster_name). Elements without a name are kept.
func filterByName(m protoreflect.Message, re *regexp.Regexp) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !fd.IsList() || fd.Message() == nil || !m.Has(fd) {
			continue
		}
		list := m.Mutable(fd).List()
		kept := 0
		for j := 0; j < list.Len(); j++ {
			e := list.Get(j)
			if name, ok := resourceName(e.Message()); !ok || re.MatchString(name) {
				list.Set(kept, e)
				kept++
			}
		}
		list.Truncate(kept)
	}
}

func resourceName(m protoreflect.Message) (string, bool) {
	if s, ok := stringField(m, "name"); ok {
		return s, true
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.IsList() || fd.Message() == nil || fd.Message().FullName() != anyFullName || !m.Has(fd) {
			continue
		}
		anyMsg, ok := m.Get(fd).Message().Interface().(*anypb.Any)
		if !ok {
			return "", false
		}
		inner, err := anyMsg.UnmarshalNew()
		if err != nil {
			return "", false
		}
		for _, n := range []protoreflect.Name{"name", "cluster_name"} {
			if s, ok := stringField(inner.ProtoReflect(), n); ok {
				return s, true
			}
		}
		return "", false
	}
	return "", false
}

func stringField(m protoreflect.Message, name protoreflect.Name) (string, bool) {
	fd := m.Descriptor().Fields().ByName(name)
	if fd == nil || fd.IsList() || fd.Kind() != protoreflect.StringKind {
		return "", false
	}
	return m.Get(fd).String(), true
}

const anyFullName = "google.protobuf.Any"

// maskTree is a parsed FieldMask: a field maps to nil to keep it whole, or
// to the subtree of its sub-fields to keep.
type maskTree map[protoreflect.Name]maskTree

func buildMaskTree(paths []string) maskTree {
	root := maskTree{}
	for _, p := range paths {
		t := root
		parts := strings.Split(p, ".")
		for i, part := range parts {
			name := protoreflect.Name(part)
			sub, seen := t[name]
			if i == len(parts)-1 {
				t[name] = nil // the whole field wins over any narrower path
				break
			}
			if seen && sub == nil {
				break // already kept whole
			}
			if sub == nil {
				sub = maskTree{}
				t[name] = sub
			}
			t = sub
		}
	}
	return root
}

// validMaskPath is C++'s FieldMaskUtil::GetFieldDescriptors: every part
// names a field and all but the last are singular message fields.
func validMaskPath(md protoreflect.MessageDescriptor, path string) bool {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		fd := md.Fields().ByName(protoreflect.Name(part))
		if fd == nil {
			return false
		}
		if i < len(parts)-1 {
			if fd.IsList() || fd.IsMap() || fd.Message() == nil {
				return false
			}
			md = fd.Message()
		}
	}
	return true
}

// trimChecked is Envoy's checkFieldMaskAndTrimMessage: false, leaving m
// untouched, when a path does not fit m.
func trimChecked(m protoreflect.Message, paths []string) bool {
	for _, p := range paths {
		if !validMaskPath(m.Descriptor(), p) {
			return false
		}
	}
	if len(paths) > 0 {
		trimMessage(m, buildMaskTree(paths))
	}
	return true
}

// trimMessage is C++'s FieldMaskUtil::TrimMessage.
func trimMessage(m protoreflect.Message, t maskTree) {
	var clear []protoreflect.FieldDescriptor
	var narrow []protoreflect.FieldDescriptor
	m.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		sub, ok := t[fd.Name()]
		switch {
		case !ok:
			clear = append(clear, fd)
		case sub != nil:
			narrow = append(narrow, fd)
		}
		return true
	})
	for _, fd := range clear {
		m.Clear(fd)
	}
	for _, fd := range narrow {
		trimMessage(m.Mutable(fd).Message(), t[fd.Name()])
	}
}

// trimResource is Envoy's trimResourceMessage: paths that start with the
// element's singular Any field (StaticCluster.cluster, ...) are applied to
// the resource inside the Any, the rest to the element itself.
func trimResource(m protoreflect.Message, paths []string) bool {
	var outer, inner []string
	var anyField protoreflect.FieldDescriptor
	for _, p := range paths {
		first, rest, _ := strings.Cut(p, ".")
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(first))
		if fd != nil && !fd.IsList() && fd.Message() != nil && fd.Message().FullName() == anyFullName {
			if anyField != nil && anyField != fd {
				return false // Envoy supports a single Any field per resource
			}
			anyField = fd
			outer = append(outer, first)
			if rest != "" {
				inner = append(inner, rest)
			}
			continue
		}
		outer = append(outer, p)
	}
	if anyField != nil && len(inner) > 0 && m.Has(anyField) {
		anyMsg, ok := m.Mutable(anyField).Message().Interface().(*anypb.Any)
		if !ok {
			return false
		}
		res, err := anyMsg.UnmarshalNew()
		if err != nil || !trimChecked(res.ProtoReflect(), inner) {
			return false
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
		if err != nil {
			return false
		}
		anyMsg.Value = b
	}
	return trimChecked(m, outer)
}

const redacted = "[redacted]"

// redact is Envoy's MessageUtil::redact (source/common/protobuf/utility.cc):
// every field marked (udpa.annotations.sensitive), and everything under it,
// has its strings and bytes replaced by "[redacted]" and its other scalars
// cleared; Anys are unpacked to be redacted and repacked.
// TODO(admin): TypedStruct contents are not reified and redacted yet.
func redact(m protoreflect.Message, ancestorSensitive bool) {
	if m.Descriptor().FullName() == anyFullName && redactAny(m, ancestorSensitive) {
		return
	}
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		sensitive := ancestorSensitive || isSensitive(fd)
		switch {
		case !m.Has(fd):
		case fd.IsMap():
			redactMap(m.Mutable(fd).Map(), fd.MapValue(), sensitive)
		case fd.Message() != nil && fd.IsList():
			l := m.Mutable(fd).List()
			for j := 0; j < l.Len(); j++ {
				redact(l.Get(j).Message(), sensitive)
			}
		case fd.Message() != nil:
			redact(m.Mutable(fd).Message(), sensitive)
		case !sensitive:
		case fd.IsList() && (fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind):
			l := m.Mutable(fd).List()
			for j := 0; j < l.Len(); j++ {
				l.Set(j, redactedValue(fd.Kind()))
			}
		case fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind:
			m.Set(fd, redactedValue(fd.Kind()))
		default:
			m.Clear(fd)
		}
	}
}

func redactMap(mp protoreflect.Map, vd protoreflect.FieldDescriptor, sensitive bool) {
	var keys []protoreflect.MapKey
	mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	for _, k := range keys {
		switch {
		case vd.Message() != nil:
			redact(mp.Mutable(k).Message(), sensitive)
		case !sensitive:
		case vd.Kind() == protoreflect.StringKind || vd.Kind() == protoreflect.BytesKind:
			mp.Set(k, redactedValue(vd.Kind()))
		default:
			mp.Set(k, vd.Default())
		}
	}
}

func redactedValue(k protoreflect.Kind) protoreflect.Value {
	if k == protoreflect.BytesKind {
		return protoreflect.ValueOfBytes([]byte(redacted))
	}
	return protoreflect.ValueOfString(redacted)
}

// redactAny redacts the message inside an Any. It returns false, so the Any
// is treated as an ordinary message, when the type is not linked in (Envoy
// does the same, with a warning).
func redactAny(m protoreflect.Message, ancestorSensitive bool) bool {
	anyMsg, ok := m.Interface().(*anypb.Any)
	if !ok {
		return false
	}
	if len(anyMsg.Value) == 0 {
		return true
	}
	inner, err := anyMsg.UnmarshalNew()
	if err != nil {
		return false
	}
	redact(inner.ProtoReflect(), ancestorSensitive)
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(inner)
	if err != nil {
		return false
	}
	anyMsg.Value = b
	return true
}

func isSensitive(fd protoreflect.FieldDescriptor) bool {
	opts := fd.Options()
	if opts == nil {
		return false
	}
	v, _ := proto.GetExtension(opts, annotations.E_Sensitive).(bool)
	return v
}
