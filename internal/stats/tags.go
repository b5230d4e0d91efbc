package stats

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Tag is one dimension extracted from a stat name, e.g.
// {Name: "envoy.cluster_name", Value: "backend"}.
type Tag struct {
	Name  string
	Value string
}

// TagSpec is one config.metrics.v3.TagSpecifier from the bootstrap's
// stats_config.stats_tags
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/metrics/v3/stats.proto#config-metrics-v3-tagspecifier).
//
// Exactly one of Regex and FixedValue is used; when both are empty, Name must
// be one of Envoy's default tag names and its default extractors are used.
type TagSpec struct {
	// Name is the tag name (tag_name); required.
	Name string
	// Regex (regex) extracts the tag: the first capture group is the part of
	// the name removed from the tag-extracted name, the second (if present and
	// non-empty) the tag value; otherwise the first is the value too.
	// Envoy compiles custom regexes as ECMAScript std::regex; herald uses Go's
	// RE2 syntax and rewrites the one lookahead Envoy's docs use,
	// "(?=\.).*?\.", to an equivalent RE2 form. Other lookarounds are an error.
	Regex string
	// FixedValue (fixed_value) adds the tag with this value to every stat.
	FixedValue string
}

// Envoy's well-known tag names
// (source/common/config/well_known_names.h in envoyproxy/envoy).
const (
	TagClusterName                  = "envoy.cluster_name"
	TagListenerAddress              = "envoy.listener_address"
	TagHTTPConnManagerPrefix        = "envoy.http_conn_manager_prefix"
	TagHTTPUserAgent                = "envoy.http_user_agent"
	TagSSLCipher                    = "envoy.ssl_cipher"
	TagSSLCurve                     = "envoy.ssl_curve"
	TagSSLSigalg                    = "envoy.ssl_sigalg"
	TagSSLVersion                   = "envoy.ssl_version"
	TagSSLCipherSuite               = "cipher_suite" // sic: no "envoy." prefix in Envoy either
	TagClientSSLPrefix              = "envoy.clientssl_prefix"
	TagMongoPrefix                  = "envoy.mongo_prefix"
	TagMongoCmd                     = "envoy.mongo_cmd"
	TagMongoCollection              = "envoy.mongo_collection"
	TagMongoCallsite                = "envoy.mongo_callsite"
	TagRatelimitPrefix              = "envoy.ratelimit_prefix"
	TagLocalHTTPRatelimitPrefix     = "envoy.local_http_ratelimit_prefix"
	TagLocalNetworkRatelimitPrefix  = "envoy.local_network_ratelimit_prefix"
	TagLocalListenerRatelimitPrefix = "envoy.local_listener_ratelimit_prefix"
	TagDNSFilterPrefix              = "envoy.dns_filter_prefix"
	TagTCPPrefix                    = "envoy.tcp_prefix"
	TagUDPPrefix                    = "envoy.udp_prefix"
	TagFaultDownstreamCluster       = "envoy.fault_downstream_cluster"
	TagDynamoOperation              = "envoy.dynamo_operation"
	TagDynamoTable                  = "envoy.dynamo_table"
	TagDynamoPartitionID            = "envoy.dynamo_partition_id"
	TagGRPCBridgeService            = "envoy.grpc_bridge_service"
	TagGRPCBridgeMethod             = "envoy.grpc_bridge_method"
	TagVirtualHost                  = "envoy.virtual_host"
	TagVirtualCluster               = "envoy.virtual_cluster"
	TagResponseCode                 = "envoy.response_code"
	TagResponseCodeClass            = "envoy.response_code_class"
	TagRDSRouteConfig               = "envoy.rds_route_config"
	TagRoute                        = "envoy.route"
	TagExtAuthzPrefix               = "envoy.ext_authz_prefix"
	TagWorkerID                     = "envoy.worker_id"
	TagThriftPrefix                 = "envoy.thrift_prefix"
	TagRedisPrefix                  = "envoy.redis_prefix"
)

// regexDescriptor and tokenDescriptor mirror Envoy's
// TagNameValues::Descriptor and TokenizedDescriptor.
type regexDescriptor struct {
	name, regex, substr, negativeMatch string
}

type tokenDescriptor struct {
	name, pattern string
}

// expandRegex replaces the shorthands of Envoy's well_known_names.cc.
var expandRegex = strings.NewReplacer(
	// IPv4 or bracketed IPv6 (colons already turned into underscores) plus port.
	"<ADDRESS>", `(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)`,
	"<CIPHER>", `[\w-]+`,
	"<TLS_VERSION>", `TLSv\d\.\d`,
	"<TAG_VALUE>", `[^\.]+`,
	"<ROUTE_CONFIG_NAME>", `[\w-\.]+`,
	"<LISTENER_OR_CLUSTER_WITH_NAME>", `(?:listener|cluster)\..*?`,
).Replace

// defaultRegexDescriptors and defaultTokenDescriptors are Envoy's default tag
// extractors, in Envoy's order (source/common/config/well_known_names.cc,
// TagNameValues::TagNameValues). Envoy adds all regex ones, then all
// tokenized ones; the order decides the order of tags on a stat.
var defaultRegexDescriptors = []regexDescriptor{
	// *_rq(_<response_code>)
	{name: TagResponseCode, regex: `_rq(_(\d{3}))$`, substr: "_rq_"},
	// *_rq_(<response_code_class>)xx
	{name: TagResponseCodeClass, regex: `_rq_((\d))xx$`, substr: "_rq_"},
	// http.[<stat_prefix>.]dynamodb.table.[<table_name>.]capacity.[<operation_name>.](__partition_id=<last_seven_characters_from_partition_id>)
	{name: TagDynamoPartitionID, regex: `^http\.<TAG_VALUE>\.dynamodb\.table\.<TAG_VALUE>\.capacity\.<TAG_VALUE>(\.__partition_id=(\w{7}))$`, substr: ".dynamodb.table."},
	// http.[<stat_prefix>.]dynamodb.operation.(<operation_name>.)* or
	// http.[<stat_prefix>.]dynamodb.table.[<table_name>.]capacity.(<operation_name>.)[<partition_id>]
	{name: TagDynamoOperation, regex: `^http\.<TAG_VALUE>\.dynamodb.(?:operation|table\.<TAG_VALUE>\.capacity)(\.(<TAG_VALUE>))(?:\.|$)`, substr: ".dynamodb."},
	// http.[<stat_prefix>.]dynamodb.table.(<table_name>.)* or http.[<stat_prefix>.]dynamodb.error.(<table_name>.)*
	{name: TagDynamoTable, regex: `^http\.<TAG_VALUE>\.dynamodb.(?:table|error)\.((<TAG_VALUE>)\.)`, substr: ".dynamodb."},
	// listener.[<address>.]ssl.ciphers.(<cipher>)
	{name: TagSSLCipher, regex: `^listener\..*?\.ssl\.ciphers(\.(<CIPHER>))$`, substr: ".ssl.ciphers."},
	// (listener|cluster).[<name>.]ssl.curves.(<curve>)
	{name: TagSSLCurve, regex: `^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.curves(\.(<CIPHER>))$`, substr: ".ssl.curves."},
	// (listener|cluster).[<name>.]ssl.sigalgs.(<algorithm>)
	{name: TagSSLSigalg, regex: `^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.sigalgs(\.(<CIPHER>))$`, substr: ".ssl.sigalgs."},
	// (listener|cluster).[<name>.]ssl.versions.(<version>)
	{name: TagSSLVersion, regex: `^<LISTENER_OR_CLUSTER_WITH_NAME>\.ssl\.versions(\.(<TLS_VERSION>))$`, substr: ".ssl.versions."},
	// cluster.[<cluster_name>.]ssl.ciphers.(<cipher>)
	{name: TagSSLCipherSuite, regex: `^cluster\.<TAG_VALUE>\.ssl\.ciphers(\.(<CIPHER>))$`, substr: ".ssl.ciphers."},
	// listener.[<address>.]http.(<stat_prefix>.)*
	{name: TagHTTPConnManagerPrefix, regex: `^listener\..*?\.http\.((<TAG_VALUE>)\.)`, substr: ".http."},
	// listener.<address|stat_prefix>.(worker_<id>.)*, listener_manager.(worker_<id>.)*, server.(worker_<id>.)*
	{name: TagWorkerID, regex: `^(?:listener\.(?:<ADDRESS>|<TAG_VALUE>)\.|server\.|listener_manager\.)worker_((\d+)\.)`},
	// listener.(<address|stat_prefix>.)*, but not "admin"
	{name: TagListenerAddress, regex: `^listener\.((<ADDRESS>|<TAG_VALUE>)\.)`, negativeMatch: "admin"},
	// http.[<stat_prefix>.]rds.(<route_config_name>.)<base_stat>
	{name: TagRDSRouteConfig, regex: `^http\.<TAG_VALUE>\.rds\.((<ROUTE_CONFIG_NAME>)\.)\w+?$`, substr: ".rds."},
}

var defaultTokenDescriptors = []tokenDescriptor{
	{name: TagMongoCallsite, pattern: "mongo.*.collection.*.callsite.$.query.**"},
	{name: TagMongoCollection, pattern: "mongo.*.collection.$.**.query.*"},
	{name: TagMongoCmd, pattern: "mongo.*.cmd.$.**"},
	{name: TagGRPCBridgeMethod, pattern: "cluster.*.grpc.*.$.**"},
	{name: TagHTTPUserAgent, pattern: "http.*.user_agent.$.**"},
	{name: TagVirtualCluster, pattern: "vhost.*.vcluster.$.**"},
	{name: TagFaultDownstreamCluster, pattern: "http.*.fault.$.**"},
	{name: TagGRPCBridgeService, pattern: "cluster.*.grpc.$.**"},
	{name: TagTCPPrefix, pattern: "tcp.$.**"},
	{name: TagUDPPrefix, pattern: "udp.$.**"},
	{name: TagClientSSLPrefix, pattern: "auth.clientssl.$.**"},
	{name: TagRatelimitPrefix, pattern: "ratelimit.$.**"},
	{name: TagClusterName, pattern: "cluster.$.**"},
	{name: TagExtAuthzPrefix, pattern: "cluster.*.ext_authz.$.**"},
	{name: TagExtAuthzPrefix, pattern: "http.*.ext_authz.$.**"},
	{name: TagHTTPConnManagerPrefix, pattern: "http.$.**"},
	{name: TagVirtualHost, pattern: "vhost.$.**"},
	{name: TagMongoPrefix, pattern: "mongo.$.**"},
	{name: TagRoute, pattern: "vhost.*.route.$.**"},
	{name: TagThriftPrefix, pattern: "thrift.$.**"},
	{name: TagRedisPrefix, pattern: "redis.$.**"},
	{name: TagLocalHTTPRatelimitPrefix, pattern: "$.http_local_rate_limit.**"},
	{name: TagLocalNetworkRatelimitPrefix, pattern: "local_rate_limit.$.**"},
	{name: TagLocalListenerRatelimitPrefix, pattern: "listener_local_ratelimit.$.**"},
	{name: TagDNSFilterPrefix, pattern: "dns_filter.$.**"},
}

type extractorKind uint8

const (
	kindRegex extractorKind = iota
	kindTokens
	kindFixed
)

// extractor is one compiled tag extractor. Immutable after construction and
// safe for concurrent use (regexp.Regexp is).
type extractor struct {
	name   string
	kind   extractorKind
	prefix string // first token of names it can match; "" = any name

	// kindRegex
	re            *regexp.Regexp
	substr        string // cheap pre-filter: the name must contain it
	negativeMatch string // a value that never counts as a match

	// kindTokens
	tokens     []string
	matchIndex int

	// kindFixed
	value string

	// shared is set when another extractor has the same tag name; the
	// first one to match wins (Envoy's TagProducerImpl dup_set).
	shared bool
}

func newRegexExtractor(name, expr, substr, negativeMatch string) (*extractor, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("stats: tag %q: invalid regex %q: %w", name, expr, err)
	}
	return &extractor{
		name: name, kind: kindRegex, prefix: regexPrefix(expr),
		re: re, substr: substr, negativeMatch: negativeMatch,
	}, nil
}

func newTokenExtractor(name, pattern string) *extractor {
	tokens := strings.Split(pattern, ".")
	x := &extractor{name: name, kind: kindTokens, tokens: tokens, matchIndex: slices.Index(tokens, "$")}
	if first := tokens[0]; first != "$" && first != "*" && first != "**" {
		x.prefix = first
	}
	return x
}

// regexPrefix is Envoy's TagExtractorImplBase::extractRegexPrefix: for a
// regex "^word\." (or "^word(?=\.)", or "^word$") it returns "word", so the
// extractor only runs on names whose first token is "word".
func regexPrefix(expr string) string {
	if !strings.HasPrefix(expr, "^") {
		return ""
	}
	for i := 1; i < len(expr); i++ {
		c := expr[i]
		if isAlnum(c) || c == '_' {
			continue
		}
		if i > 1 {
			last := i == len(expr)-1
			rest := expr[i:]
			if (!last && (strings.HasPrefix(rest, `\.`) || strings.HasPrefix(rest, `(?=\.)`))) || (last && c == '$') {
				return expr[1:i]
			}
		}
		return ""
	}
	return ""
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// interval is a half-open byte range [start, end) of a stat name to remove.
type interval struct{ start, end int }

// extract adds the tag to tags and the bytes to remove to removals, reporting
// whether the extractor matched. tokens is filled lazily with name split on
// dots (Envoy's TagExtractionContext).
func (x *extractor) extract(name string, tokens *[]string, tags *[]Tag, removals *[]interval) bool {
	switch x.kind {
	case kindFixed:
		*tags = append(*tags, Tag{Name: x.name, Value: x.value})
		return true
	case kindRegex:
		// Envoy: TagExtractorRe2Impl::extractTag (RE2::PartialMatch; group 1
		// must be non-empty; an empty group 2 falls back to group 1).
		if x.substr != "" && !strings.Contains(name, x.substr) {
			return false
		}
		m := x.re.FindStringSubmatchIndex(name)
		if len(m) < 4 || m[2] < 0 || m[2] == m[3] {
			return false
		}
		rs, re := m[2], m[3]
		value := name[rs:re]
		if len(m) >= 6 && m[4] >= 0 && m[4] < m[5] {
			value = name[m[4]:m[5]]
		}
		if x.negativeMatch != "" && value == x.negativeMatch {
			return false
		}
		*tags = append(*tags, Tag{Name: x.name, Value: value})
		*removals = append(*removals, interval{rs, re})
		return true
	case kindTokens:
		if *tokens == nil {
			*tokens = strings.Split(name, ".")
		}
		in := *tokens
		start, idx := 0, len(in)
		if !x.searchTokens(in, 0, 0, 0, &start, &idx) {
			return false
		}
		value := in[idx]
		// Envoy: TagExtractorTokensImpl::extractTag removes the dot after the
		// value, or the dot before it when the value is the last token.
		end := start + len(value)
		if idx < len(in)-1 {
			end++
		} else if start > 0 {
			start--
		}
		*tags = append(*tags, Tag{Name: x.name, Value: value})
		*removals = append(*removals, interval{start, end})
		return true
	}
	return false
}

// searchTokens is Envoy's TagExtractorTokensImpl::searchTags: "*" matches one
// token, "**" any number (zero or more, but it must be reached), "$" one token
// that becomes the value; other tokens match literally.
func (x *extractor) searchTokens(in []string, ii, pi, ci int, start, idx *int) bool {
	for ; ii < len(in) && pi < len(x.tokens); ii, pi = ii+1, pi+1 {
		if pi == x.matchIndex {
			*start = ci
			*idx = ii
			// Envoy does not advance the character index past the "$"
			// token; it is only read again for a second "$", which no
			// pattern has.
			continue
		}
		want := x.tokens[pi]
		if want == "**" {
			if pi == len(x.tokens)-1 {
				return true
			}
			pi++
			for ; ii < len(in); ii++ {
				if x.searchTokens(in, ii, pi, ci, start, idx) {
					return true
				}
				ci += len(in[ii]) + 1
			}
			return false
		}
		if want != "*" && want != in[ii] {
			return false
		}
		ci += len(in[ii]) + 1
	}
	return pi == len(x.tokens) && ii == len(in)
}

// TagExtractor turns a full stat name into Envoy's tag-extracted name and
// tags (Envoy's TagProducerImpl). It is immutable and safe for concurrent use;
// build it once per bootstrap.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/metrics/v3/stats.proto#config-metrics-v3-statsconfig
// — every extractor matches the original name independently ("the first
// capture group is not immediately removed from the name, so later
// TagSpecifiers can also match that same portion"); the union of the removed
// parts is cut out at the end.
type TagExtractor struct {
	withoutPrefix []*extractor
	byPrefix      map[string][]*extractor
}

var (
	defaultExtractorsOnce sync.Once
	defaultExtractors     []*extractor
	defaultExtractor      *TagExtractor
)

// compiledDefaults compiles Envoy's default regexes once per process.
func compiledDefaults() []*extractor {
	defaultExtractorsOnce.Do(func() {
		for _, d := range defaultRegexDescriptors {
			x, err := newRegexExtractor(d.name, expandRegex(d.regex), d.substr, d.negativeMatch)
			if err != nil {
				panic(err) // a bad built-in regex is a programmer error
			}
			defaultExtractors = append(defaultExtractors, x)
		}
		for _, d := range defaultTokenDescriptors {
			defaultExtractors = append(defaultExtractors, newTokenExtractor(d.name, d.pattern))
		}
		defaultExtractor = &TagExtractor{}
		for _, x := range defaultExtractors {
			defaultExtractor.add(x)
		}
		defaultExtractor.markShared()
	})
	return defaultExtractors
}

// DefaultTagExtractor returns the extractor with Envoy's default tags only
// (stats_config absent, or use_all_default_tags true with no stats_tags).
func DefaultTagExtractor() *TagExtractor {
	compiledDefaults()
	return defaultExtractor
}

// NewTagExtractor builds the extractor for stats_config: Envoy's defaults
// first when useDefaults (use_all_default_tags, which Envoy treats as true
// when unset), then specs in order.
func NewTagExtractor(specs []TagSpec, useDefaults bool) (*TagExtractor, error) {
	defaults := compiledDefaults()
	e := &TagExtractor{}
	if useDefaults {
		for _, x := range defaults {
			e.add(x)
		}
	}
	var errs []error
	for i, spec := range specs {
		if spec.Name == "" {
			errs = append(errs, fmt.Errorf("stats: stats_tags[%d]: tag_name cannot be empty", i))
			continue
		}
		switch {
		case spec.FixedValue != "":
			e.add(&extractor{name: spec.Name, kind: kindFixed, value: spec.FixedValue})
		case spec.Regex != "":
			expr, err := rewriteLookahead(spec.Regex)
			if err != nil {
				errs = append(errs, fmt.Errorf("stats: stats_tags[%d]: %w", i, err))
				continue
			}
			x, err := newRegexExtractor(spec.Name, expr, "", "")
			if err != nil {
				errs = append(errs, fmt.Errorf("stats: stats_tags[%d]: %w", i, err))
				continue
			}
			e.add(x)
		default:
			// Envoy: TagProducerImpl falls back to the default extractors
			// of that name, and fails when there is none.
			found := 0
			for _, x := range defaults {
				if x.name == spec.Name {
					e.add(x)
					found++
				}
			}
			if found == 0 {
				errs = append(errs, fmt.Errorf("stats: stats_tags[%d]: no regex specified for tag specifier and no default regex for name: %q", i, spec.Name))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	e.markShared()
	return e, nil
}

// add appends x; shared flags are recomputed by markShared. Extractors from
// the compiled defaults may be added to several TagExtractors, so add copies
// them.
func (e *TagExtractor) add(x *extractor) {
	c := *x
	c.shared = false
	if c.prefix == "" {
		e.withoutPrefix = append(e.withoutPrefix, &c)
		return
	}
	if e.byPrefix == nil {
		e.byPrefix = map[string][]*extractor{}
	}
	e.byPrefix[c.prefix] = append(e.byPrefix[c.prefix], &c)
}

func (e *TagExtractor) markShared() {
	count := map[string]int{}
	e.each(func(x *extractor) { count[x.name]++ })
	e.each(func(x *extractor) { x.shared = count[x.name] > 1 })
}

func (e *TagExtractor) each(f func(*extractor)) {
	for _, x := range e.withoutPrefix {
		f(x)
	}
	for _, xs := range e.byPrefix {
		for _, x := range xs {
			f(x)
		}
	}
}

// Extract returns the tag-extracted name of the full stat name and its tags,
// in Envoy's order: extractors that apply to any name first, then those keyed
// on the name's first token, each group in configuration order. A nil
// extractor returns the name unchanged and no tags.
//
// It allocates; call it when a stat is created, never per request.
func (e *TagExtractor) Extract(name string) (string, []Tag) {
	if e == nil {
		return name, nil
	}
	var (
		tags     []Tag
		tokens   []string
		removals []interval
		matched  []string // names of shared extractors that matched
	)
	apply := func(x *extractor) {
		if x.shared && slices.Contains(matched, x.name) {
			return
		}
		if x.extract(name, &tokens, &tags, &removals) && x.shared {
			matched = append(matched, x.name)
		}
	}
	for _, x := range e.withoutPrefix {
		apply(x)
	}
	if dot := strings.IndexByte(name, '.'); dot >= 0 {
		for _, x := range e.byPrefix[name[:dot]] {
			apply(x)
		}
	}
	return removeIntervals(name, removals), tags
}

// removeIntervals cuts the union of the intervals out of s (Envoy's
// StringUtil::removeCharacters with an IntervalSet).
func removeIntervals(s string, iv []interval) string {
	if len(iv) == 0 {
		return s
	}
	slices.SortFunc(iv, func(a, b interval) int { return a.start - b.start })
	var b strings.Builder
	b.Grow(len(s))
	pos := 0
	for i := 0; i < len(iv); {
		start, end := iv[i].start, iv[i].end
		for i++; i < len(iv) && iv[i].start <= end; i++ {
			end = max(end, iv[i].end)
		}
		if start > pos {
			b.WriteString(s[pos:start])
		}
		pos = max(pos, end)
	}
	b.WriteString(s[pos:])
	return b.String()
}

// lookaheadDotRe finds "(?=\.)" followed by ".*?\." or ".*\." or "\.".
var lookaheadDotRe = regexp.MustCompile(`\(\?=\\\.\)(\.\*\?\\\.|\.\*\\\.|\\\.)`)

// rewriteLookahead turns the lookahead idiom of Envoy's documented examples
// ("^http(?=\.).*?\.user_agent…") into RE2: "(?=\.).*?\." matches either a
// single dot or a dot, anything, a dot, which RE2 writes "\.(?:.*?\.)??".
// Any other lookaround cannot be expressed and is reported.
func rewriteLookahead(expr string) (string, error) {
	out := lookaheadDotRe.ReplaceAllStringFunc(expr, func(m string) string {
		switch strings.TrimPrefix(m, `(?=\.)`) {
		case `.*?\.`:
			return `\.(?:.*?\.)??`
		case `.*\.`:
			return `\.(?:.*\.)?`
		default: // `\.`
			return `\.`
		}
	})
	for _, look := range []string{"(?=", "(?!", "(?<=", "(?<!"} {
		if strings.Contains(out, look) {
			return "", fmt.Errorf("regex %q: lookaround %q is not supported by herald (Go RE2 syntax)", expr, look)
		}
	}
	return out, nil
}
