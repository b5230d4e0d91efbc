package headertometadata

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	h2mv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_to_metadata/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/matcher"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*h2mv3.Config]{
		Name:          Name,
		Config:        &h2mv3.Config{},
		PerRoute:      &h2mv3.Config{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

const (
	// Name is the filter's Envoy name, also the default metadata namespace
	// (decideNamespace: HttpFilterNames::get().HeaderToMetadata).
	Name = "envoy.filters.http.header_to_metadata"
	// maxValueLen is Envoy's MAX_HEADER_VALUE_LEN: longer values are not
	// added (addMetadata: "metadata value is too long").
	maxValueLen = 8 * 1024
)

var unsupportedIssues = map[string]string{"stat_prefix": "#8"}

// Config is a compiled header_to_metadata Config (the filter's, or a
// route's typed_per_filter_config). Immutable after Build.
type Config struct {
	request, response []rule
}

// rule is a compiled Config.Rule.
type rule struct {
	header string // lowercase header name; "" for a cookie rule
	cookie string
	remove bool
	// present and missing are on_header_present / on_header_missing; nil
	// when unset.
	present, missing *keyValue
}

// keyValue is a compiled Config.KeyValuePair.
type keyValue struct {
	ns, key, value string
	re             *regexp.Regexp // regex_value_rewrite pattern, nil when none
	sub            string         // its substitution in Go template syntax
	typ            h2mv3.Config_ValueType
	base64         bool
}

// Build interprets the filter's Config once per snapshot. An empty config
// is fine (rules may come per route).
func Build(cfg *h2mv3.Config, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	c, err := compile(cfg, ctx.Path, false)
	if err != nil {
		return nil, err
	}
	name := ctx.Name
	if name == "" {
		name = Name
	}
	fc := &filterConfig{name: name, cfg: c}
	fc.pool.New = func() any { return &Filter{} }
	return fc.newFilter, nil
}

// BuildPerRoute interprets a route's Config; it returns *Config, which
// replaces the filter's rules for the route. Envoy refuses one without
// rules ("Per filter configs must at least specify either request or
// response rules").
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	return compile(m.(*h2mv3.Config), ctx.Path, true)
}

func compile(cfg *h2mv3.Config, path string, perRoute bool) (*Config, error) {
	var errs configerr.List
	errs = append(errs, configerr.RejectUnlisted(cfg, path, unsupportedIssues, "request_rules", "response_rules")...)
	c := &Config{}
	for i, r := range cfg.GetRequestRules() {
		c.request = append(c.request, compileRule(r, fmt.Sprintf("%s.request_rules[%d]", path, i), &errs))
	}
	for i, r := range cfg.GetResponseRules() {
		c.response = append(c.response, compileRule(r, fmt.Sprintf("%s.response_rules[%d]", path, i), &errs))
	}
	if perRoute && len(c.request) == 0 && len(c.response) == 0 {
		errs = append(errs, configerr.At(path, "a per-route header_to_metadata config must specify request_rules or response_rules (Envoy refuses an empty one)"))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// compileRule checks what Envoy's Rule constructor checks.
func compileRule(r *h2mv3.Config_Rule, path string, errs *configerr.List) rule {
	ru := rule{header: strings.ToLower(r.GetHeader()), cookie: r.GetCookie(), remove: r.GetRemove()}
	switch {
	case ru.header != "" && ru.cookie != "":
		*errs = append(*errs, configerr.At(path, "cannot specify both header and cookie"))
	case ru.header == "" && ru.cookie == "":
		*errs = append(*errs, configerr.At(path, "one of cookie or header needs to be specified"))
	}
	if r.GetOnHeaderPresent() == nil && r.GetOnHeaderMissing() == nil {
		*errs = append(*errs, configerr.At(path, "rule has neither on_header_present nor on_header_missing set"))
	}
	if ru.cookie != "" && ru.remove {
		*errs = append(*errs, configerr.At(path+".remove", "cannot specify remove for cookie"))
	}
	if p := r.GetOnHeaderPresent(); p != nil {
		pp := path + ".on_header_present"
		kv := compileKeyValue(p, pp, errs)
		if p.GetValue() != "" && p.GetRegexValueRewrite() != nil {
			*errs = append(*errs, configerr.At(pp, "cannot specify both value and regex_value_rewrite"))
		}
		if rw := p.GetRegexValueRewrite(); rw != nil {
			re, sub, err := matcher.CompileRewrite(rw)
			if err != nil {
				*errs = append(*errs, configerr.At(pp+".regex_value_rewrite", "%v", err))
			}
			kv.re, kv.sub = re, sub
		}
		ru.present = kv
	}
	if m := r.GetOnHeaderMissing(); m != nil {
		mp := path + ".on_header_missing"
		if m.GetValue() == "" {
			*errs = append(*errs, configerr.At(mp+".value", "cannot specify on_header_missing rule with an empty value"))
		}
		if m.GetRegexValueRewrite() != nil {
			// Envoy compiles the rewrite of on_header_present only; one here
			// would be silently ignored.
			*errs = append(*errs, configerr.At(mp+".regex_value_rewrite", "regex_value_rewrite is only used by on_header_present"))
		}
		ru.missing = compileKeyValue(m, mp, errs)
	}
	return ru
}

func compileKeyValue(p *h2mv3.Config_KeyValuePair, path string, errs *configerr.List) *keyValue {
	kv := &keyValue{ns: p.GetMetadataNamespace(), key: p.GetKey(), value: p.GetValue(), typ: p.GetType()}
	if kv.ns == "" {
		kv.ns = Name
	}
	switch p.GetType() {
	case h2mv3.Config_STRING, h2mv3.Config_NUMBER, h2mv3.Config_PROTOBUF_VALUE:
	default:
		*errs = append(*errs, configerr.At(path+".type", "unknown value type %v", p.GetType()))
	}
	switch p.GetEncode() {
	case h2mv3.Config_NONE:
	case h2mv3.Config_BASE64:
		kv.base64 = true
	default:
		*errs = append(*errs, configerr.At(path+".encode", "unknown encoding %v", p.GetEncode()))
	}
	return kv
}

// filterConfig is what the factory closes over. Immutable after Build
// (pool is safe for concurrent use).
type filterConfig struct {
	name string // the filter's name in http_filters
	cfg  *Config
	pool sync.Pool
}

func (fc *filterConfig) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f := fc.pool.Get().(*Filter)
	f.fc, f.cb, f.eff = fc, cb, nil
	return f
}

// Filter is the per-stream filter, a decoder and an encoder. Owned by the
// stream goroutine.
type Filter struct {
	fc  *filterConfig
	cb  httpfilter.Callbacks
	eff *Config // effective config, resolved once (Envoy's getConfig)
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// config is Envoy's getConfig: the most specific per-route Config, else
// the filter's, cached for the stream.
func (f *Filter) config() *Config {
	if f.eff != nil {
		return f.eff
	}
	f.eff = f.fc.cfg
	if r := f.cb.Route(); r != nil {
		if c, ok := r.PerFilterConfig(f.fc.name).(*Config); ok {
			f.eff = c
		}
	}
	return f.eff
}

// DecodeHeaders implements httpfilter.DecoderFilter: the request rules run
// on the request headers.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	if c := f.config(); len(c.request) > 0 {
		f.apply(h, c.request)
	}
	return httpfilter.Continue
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// EncodeHeaders implements httpfilter.EncoderFilter: the response rules
// run on the response headers.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	if c := f.config(); len(c.response) > 0 {
		f.apply(h, c.response)
	}
	return httpfilter.Continue
}

// EncodeData implements httpfilter.EncoderFilter.
func (f *Filter) EncodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// EncodeTrailers implements httpfilter.EncoderFilter.
func (f *Filter) EncodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// OnDestroy implements httpfilter.Destroyer: the filter goes back to its
// pool.
func (f *Filter) OnDestroy() {
	fc := f.fc
	f.fc, f.cb, f.eff = nil, nil, nil
	fc.pool.Put(f)
}

// apply is Envoy's writeHeaderToMetadata: every rule whose header (or
// cookie) is present runs on_header_present, every rule whose header is
// missing runs on_header_missing; the values are gathered per namespace
// and merged into the stream's dynamic metadata at the end (a later rule's
// key replaces an earlier one's).
func (f *Filter) apply(h *hhttp.Headers, rules []rule) {
	// The namespaces written by this event, in first-write order; rules
	// rarely use more than a few, so a small array on the stack.
	var nsBuf [4]nsStruct
	byNS := nsBuf[:0]
	for i := range rules {
		r := &rules[i]
		v, ok := r.extract(h)
		var kv *keyValue
		switch {
		case ok && r.present != nil:
			kv = r.present
		case !ok && r.missing != nil:
			kv = r.missing
			v = ""
		default:
			continue
		}
		// applyKeyValue: a configured value wins; else the rewrite, else the
		// header's value; an empty result adds nothing.
		if kv.value != "" {
			v = kv.value
		} else if kv.re != nil {
			v = kv.re.ReplaceAllString(v, kv.sub)
		}
		if v == "" {
			continue
		}
		val, ok := kv.toValue(v)
		if !ok {
			continue
		}
		var st *structpb.Struct
		for j := range byNS {
			if byNS[j].ns == kv.ns {
				st = byNS[j].s
				break
			}
		}
		if st == nil {
			st = &structpb.Struct{Fields: make(map[string]*structpb.Value, 1)}
			byNS = append(byNS, nsStruct{ns: kv.ns, s: st})
		}
		st.Fields[kv.key] = val
	}
	if len(byNS) == 0 {
		return
	}
	info := f.cb.StreamInfo()
	for _, e := range byNS {
		info.SetDynamicMetadata(e.ns, e.s)
	}
}

// nsStruct is one namespace's metadata gathered by apply.
type nsStruct struct {
	ns string
	s  *structpb.Struct
}

// extract is Envoy's HeaderValueSelector::extract (every value of the
// header joined with ",", the header removed afterwards when remove is
// set) or CookieValueSelector::extract (the cookie's value; an empty one
// counts as missing).
func (r *rule) extract(h *hhttp.Headers) (string, bool) {
	if r.cookie != "" {
		v, _ := cookieValue(h, r.cookie)
		return v, v != ""
	}
	v, ok := matcher.HeaderValue(h, r.header)
	if ok && r.remove {
		h.Del(r.header)
	}
	return v, ok
}

// toValue is Envoy's addMetadata: values of 8 KiB or more are dropped;
// BASE64 decodes first (an undecodable or empty result is dropped); then
// the type: STRING as is, NUMBER parsed as a double after trimming
// whitespace, PROTOBUF_VALUE a serialized google.protobuf.Value.
func (kv *keyValue) toValue(v string) (*structpb.Value, bool) {
	if len(v) >= maxValueLen {
		return nil, false
	}
	if kv.base64 {
		b, ok := decodeBase64(v)
		if !ok || len(b) == 0 {
			return nil, false
		}
		v = string(b)
	}
	switch kv.typ {
	case h2mv3.Config_NUMBER:
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			return nil, false
		}
		b := &numberValue{k: structpb.Value_NumberValue{NumberValue: n}}
		b.v.Kind = &b.k
		return &b.v, true
	case h2mv3.Config_PROTOBUF_VALUE:
		val := &structpb.Value{}
		if err := proto.Unmarshal([]byte(v), val); err != nil {
			return nil, false
		}
		return val, true
	}
	b := &stringValue{k: structpb.Value_StringValue{StringValue: v}}
	b.v.Kind = &b.k
	return &b.v, true
}

// stringValue and numberValue hold a structpb.Value and its Kind in one
// allocation: structpb.NewStringValue and NewNumberValue make two, and
// toValue runs for every matching rule of every request.
type (
	stringValue struct {
		v structpb.Value
		k structpb.Value_StringValue
	}
	numberValue struct {
		v structpb.Value
		k structpb.Value_NumberValue
	}
)

// decodeBase64 is Envoy's Base64::decodeWithoutPadding: standard alphabet,
// with or without '=' padding.
func decodeBase64(v string) ([]byte, bool) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(v, "="))
	return b, err == nil
}

// cookieValue is Envoy's Http::Utility::parseCookieValue: the value of the
// first cookie called name in the cookie headers, without surrounding
// double quotes.
func cookieValue(h *hhttp.Headers, name string) (string, bool) {
	for i := range h.Fields {
		if h.Fields[i].Name != "cookie" {
			continue
		}
		rest := h.Fields[i].Value
		for rest != "" {
			var kv string
			kv, rest, _ = strings.Cut(rest, ";")
			k, v, ok := strings.Cut(strings.TrimLeft(kv, " "), "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}
