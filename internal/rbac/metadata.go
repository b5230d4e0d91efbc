package rbac

import (
	"strconv"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/matcher"
)

// metadataMatcher is a compiled type.matcher.v3.MetadataMatcher (Envoy's
// Matchers::MetadataMatcher): the value at path in the namespace filter of
// the dynamic metadata, matched by value, the result inverted when invert
// is set. Immutable.
type metadataMatcher struct {
	filter string
	path   []string
	value  valueMatcher
	invert bool
}

// match is MetadataMatcher::match: a missing namespace or path gives an
// unset Value, which no value matcher matches (so an inverted matcher
// matches it).
func (m *metadataMatcher) match(md map[string]*structpb.Struct) bool {
	return m.value.match(m.lookup(md)) != m.invert
}

// lookup is Envoy's Config::Metadata::metadataValue: nil when the
// namespace, a key, or an intermediate struct is missing.
func (m *metadataMatcher) lookup(md map[string]*structpb.Struct) *structpb.Value {
	s := md[m.filter]
	if s == nil || len(m.path) == 0 {
		return nil
	}
	for i, k := range m.path {
		v := s.GetFields()[k]
		if v == nil {
			return nil
		}
		if i == len(m.path)-1 {
			return v
		}
		s = v.GetStructValue()
		if s == nil {
			return nil
		}
	}
	return nil
}

type valueKind uint8

const (
	valueNull valueKind = iota + 1
	valueDoubleRange
	valueDoubleExact
	valueString
	valueBool
	valuePresent
	valueList
	valueOr
)

// valueMatcher is a compiled type.matcher.v3.ValueMatcher (Envoy's
// Matchers::ValueMatcher). Immutable.
type valueMatcher struct {
	kind     valueKind
	lo, hi   float64 // double range [lo, hi), or lo exact
	str      matcher.String
	b        bool // bool_match, present_match
	children []valueMatcher
}

// match follows Envoy's common/common/matchers.cc: each kind matches only
// a Value of its own kind; present_match true matches any set Value,
// present_match false nothing; list_match.one_of matches a list with a
// matching element; or_match any of its matchers.
func (m *valueMatcher) match(v *structpb.Value) bool {
	if v == nil || v.GetKind() == nil {
		return false
	}
	switch m.kind {
	case valueNull:
		_, ok := v.GetKind().(*structpb.Value_NullValue)
		return ok
	case valueDoubleRange, valueDoubleExact:
		n, ok := v.GetKind().(*structpb.Value_NumberValue)
		if !ok {
			return false
		}
		if m.kind == valueDoubleExact {
			return n.NumberValue == m.lo
		}
		return m.lo <= n.NumberValue && n.NumberValue < m.hi
	case valueString:
		s, ok := v.GetKind().(*structpb.Value_StringValue)
		return ok && m.str.Match(s.StringValue)
	case valueBool:
		b, ok := v.GetKind().(*structpb.Value_BoolValue)
		return ok && b.BoolValue == m.b
	case valuePresent:
		return m.b
	case valueList:
		l, ok := v.GetKind().(*structpb.Value_ListValue)
		if !ok {
			return false
		}
		for _, e := range l.ListValue.GetValues() {
			if m.children[0].match(e) {
				return true
			}
		}
		return false
	case valueOr:
		for i := range m.children {
			if m.children[i].match(v) {
				return true
			}
		}
		return false
	}
	return false
}

func compileMetadata(mm *matcherv3.MetadataMatcher, path string, errs *configerr.List) metadataMatcher {
	m := metadataMatcher{filter: mm.GetFilter(), invert: mm.GetInvert()}
	if len(mm.GetPath()) == 0 {
		*errs = append(*errs, configerr.At(path+".path", "value must contain at least 1 item(s)"))
	}
	for i, seg := range mm.GetPath() {
		if seg.GetKey() == "" {
			*errs = append(*errs, configerr.At(path+".path["+strconv.Itoa(i)+"].key", "value length must be at least 1 characters"))
		}
		m.path = append(m.path, seg.GetKey())
	}
	if mm.GetValue() == nil {
		*errs = append(*errs, configerr.At(path+".value", "value is required"))
		return m
	}
	m.value = compileValue(mm.GetValue(), path+".value", errs)
	return m
}

func compileValue(vm *matcherv3.ValueMatcher, path string, errs *configerr.List) valueMatcher {
	switch p := vm.GetMatchPattern().(type) {
	case *matcherv3.ValueMatcher_NullMatch_:
		return valueMatcher{kind: valueNull}
	case *matcherv3.ValueMatcher_DoubleMatch:
		switch d := p.DoubleMatch.GetMatchPattern().(type) {
		case *matcherv3.DoubleMatcher_Range:
			if d.Range.GetStart() > d.Range.GetEnd() {
				*errs = append(*errs, configerr.At(path+".double_match.range", "range start %v is greater than end %v", d.Range.GetStart(), d.Range.GetEnd()))
			}
			return valueMatcher{kind: valueDoubleRange, lo: d.Range.GetStart(), hi: d.Range.GetEnd()}
		case *matcherv3.DoubleMatcher_Exact:
			return valueMatcher{kind: valueDoubleExact, lo: d.Exact}
		}
		*errs = append(*errs, configerr.At(path+".double_match", "one of range or exact is required"))
	case *matcherv3.ValueMatcher_StringMatch:
		s, _ := matcher.NewString(p.StringMatch, path+".string_match", errs)
		return valueMatcher{kind: valueString, str: s}
	case *matcherv3.ValueMatcher_BoolMatch:
		return valueMatcher{kind: valueBool, b: p.BoolMatch}
	case *matcherv3.ValueMatcher_PresentMatch:
		return valueMatcher{kind: valuePresent, b: p.PresentMatch}
	case *matcherv3.ValueMatcher_ListMatch:
		one := p.ListMatch.GetOneOf()
		if one == nil {
			*errs = append(*errs, configerr.At(path+".list_match.one_of", "one_of is required"))
			return valueMatcher{}
		}
		return valueMatcher{kind: valueList, children: []valueMatcher{compileValue(one, path+".list_match.one_of", errs)}}
	case *matcherv3.ValueMatcher_OrMatch:
		vms := p.OrMatch.GetValueMatchers()
		if len(vms) < 2 {
			*errs = append(*errs, configerr.At(path+".or_match.value_matchers", "value must contain at least 2 item(s)"))
		}
		m := valueMatcher{kind: valueOr, children: make([]valueMatcher, 0, len(vms))}
		for i, c := range vms {
			m.children = append(m.children, compileValue(c, path+".or_match.value_matchers["+strconv.Itoa(i)+"]", errs))
		}
		return m
	default:
		*errs = append(*errs, configerr.At(path, "one of null_match, double_match, string_match, bool_match, present_match, list_match, or_match is required"))
	}
	return valueMatcher{}
}
