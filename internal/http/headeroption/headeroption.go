package headeroption

import (
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// Option is one compiled core.v3.HeaderValueOption. Immutable.
type Option struct {
	name      string
	value     string
	action    corev3.HeaderValueOption_HeaderAppendAction
	keepEmpty bool
}

// List is a compiled HeaderValueOption list. Immutable.
type List []Option

// CompileList compiles a HeaderValueOption list at path, as Envoy's
// HeadersToAddEntry does (router/header_parser.cc): see Compile. Options
// that do not compile are reported in errs and left out.
func CompileList(opts []*corev3.HeaderValueOption, path string, errs *configerr.List) List {
	out := make(List, 0, len(opts))
	for i, o := range opts {
		if ho, ok := Compile(o, path+"["+strconv.Itoa(i)+"]", errs); ok {
			out = append(out, ho)
		}
	}
	return out
}

// Compile compiles one HeaderValueOption at path p as Envoy's
// HeadersToAddEntry does (router/header_parser.cc): the deprecated append
// maps to APPEND_IF_EXISTS_OR_ADD (true) or OVERWRITE_IF_EXISTS_OR_ADD
// (false) and may not be combined with append_action; value, else
// raw_value, is the value. Values are literal: "%%" is a "%", any other
// command operator is refused. It reports false, with the reason in errs,
// when o does not compile.
func Compile(o *corev3.HeaderValueOption, p string, errs *configerr.List) (Option, bool) {
	ho := Option{
		name:      strings.ToLower(o.GetHeader().GetKey()),
		action:    o.GetAppendAction(),
		keepEmpty: o.GetKeepEmptyValue(),
	}
	if a := o.GetAppend(); a != nil {
		if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			*errs = append(*errs, configerr.At(p, "Both append and append_action are set and it's not allowed"))
			return ho, false
		}
		ho.action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		if a.GetValue() {
			ho.action = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		}
	}
	v := o.GetHeader().GetValue()
	vp := p + ".header.value"
	if v == "" && len(o.GetHeader().GetRawValue()) > 0 {
		v, vp = string(o.GetHeader().GetRawValue()), p+".header.raw_value"
	}
	lit, ok := literalValue(v)
	if !ok {
		*errs = append(*errs, configerr.At(vp, "command operators in header values are %s", configerr.NotSupported))
		return ho, false
	}
	ho.value = lit
	return ho, true
}

// literalValue unescapes "%%" and reports false when v holds a command
// operator (%NAME%).
func literalValue(v string) (string, bool) {
	if !strings.Contains(v, "%") {
		return v, true
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		return "", false
	}
	return b.String(), true
}

// Apply runs l on h in order, each option seeing the previous ones'
// effect: an empty value is skipped unless keep_empty_value.
func (l List) Apply(h *hhttp.Headers) {
	for i := range l {
		l[i].Apply(h)
	}
}

// Apply runs o on h: an empty value is skipped unless keep_empty_value,
// else the value is added, set or skipped as append_action says.
func (o *Option) Apply(h *hhttp.Headers) {
	if o.value == "" && !o.keepEmpty {
		return
	}
	switch o.action {
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if !h.Has(o.name) {
			h.Add(o.name, o.value)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if h.Has(o.name) {
			h.Set(o.name, o.value)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		h.Set(o.name, o.value)
	default: // APPEND_IF_EXISTS_OR_ADD
		h.Add(o.name, o.value)
	}
}
