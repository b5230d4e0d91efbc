package headermutation

import (
	"strconv"
	"strings"
	"sync"

	mutationv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	hmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/headeroption"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/matcher"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*hmv3.HeaderMutation]{
		Name:          Name,
		Config:        &hmv3.HeaderMutation{},
		PerRoute:      &hmv3.HeaderMutationPerRoute{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.http.header_mutation"

// supportedMutations are the Mutations fields herald interprets.
var supportedMutations = []string{
	"request_mutations", "response_mutations",
	"request_trailers_mutations", "response_trailers_mutations",
}

var unsupportedIssues = map[string]string{
	"query_parameter_mutations": "#8",
	"formatters":                "#8",
}

// mutation is one compiled mutation_rules.v3.HeaderMutation. Immutable.
type mutation struct {
	remove   string               // remove: the header name
	matcher  *matcher.String      // remove_on_match: matched against names
	appendOp *headeroption.Option // append
}

// Mutations is one compiled Mutations message. Immutable.
type Mutations struct {
	request, response, requestTrailers, responseTrailers []mutation
}

// Config is the built filter.
type Config struct {
	name             string
	mutations        *Mutations
	mostSpecificWins bool
}

// Build interprets the filter's HeaderMutation once per snapshot.
func Build(cfg *hmv3.HeaderMutation, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, nil, "mutations", "most_specific_header_mutations_wins")
	m := buildMutations(cfg.GetMutations(), ctx.Path+".mutations", &errs)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	c := &Config{name: ctx.Name, mutations: m, mostSpecificWins: cfg.GetMostSpecificHeaderMutationsWins()}
	if c.name == "" {
		c.name = Name
	}
	return c.newFilter, nil
}

// BuildPerRoute interprets a HeaderMutationPerRoute.
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	cfg := m.(*hmv3.HeaderMutationPerRoute)
	errs := configerr.RejectUnlisted(cfg, ctx.Path, nil, "mutations")
	built := buildMutations(cfg.GetMutations(), ctx.Path+".mutations", &errs)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return built, nil
}

func buildMutations(cfg *hmv3.Mutations, path string, errs *configerr.List) *Mutations {
	*errs = append(*errs, configerr.RejectUnlisted(cfg, path, unsupportedIssues, supportedMutations...)...)
	return &Mutations{
		request:          buildList(cfg.GetRequestMutations(), path+".request_mutations", errs),
		response:         buildList(cfg.GetResponseMutations(), path+".response_mutations", errs),
		requestTrailers:  buildList(cfg.GetRequestTrailersMutations(), path+".request_trailers_mutations", errs),
		responseTrailers: buildList(cfg.GetResponseTrailersMutations(), path+".response_trailers_mutations", errs),
	}
}

func buildList(in []*mutationv3.HeaderMutation, path string, errs *configerr.List) []mutation {
	out := make([]mutation, 0, len(in))
	for i, hm := range in {
		p := path + "[" + strconv.Itoa(i) + "]"
		switch a := hm.GetAction().(type) {
		case *mutationv3.HeaderMutation_Remove:
			out = append(out, mutation{remove: strings.ToLower(a.Remove)})
		case *mutationv3.HeaderMutation_Append:
			if o, ok := headeroption.Compile(a.Append, p+".append", errs); ok {
				out = append(out, mutation{appendOp: &o})
			}
		case *mutationv3.HeaderMutation_RemoveOnMatch_:
			m, ok := matcher.NewString(a.RemoveOnMatch.GetKeyMatcher(), p+".remove_on_match.key_matcher", errs)
			if ok {
				out = append(out, mutation{matcher: &m})
			}
		default:
			*errs = append(*errs, configerr.At(p, "remove, append or remove_on_match is required"))
		}
	}
	return out
}

// apply runs ms on h in order, as Envoy's HeaderMutations::evaluateHeaders.
func apply(h *hhttp.Headers, ms []mutation) {
	for i := range ms {
		m := &ms[i]
		switch {
		case m.appendOp != nil:
			m.appendOp.Apply(h)
		case m.matcher != nil:
			j := 0
			for k := range h.Fields {
				if !m.matcher.Match(h.Fields[k].Name) {
					h.Fields[j] = h.Fields[k]
					j++
				}
			}
			clear(h.Fields[j:])
			h.Fields = h.Fields[:j]
		default:
			h.Del(m.remove)
		}
	}
}

var filterPool = sync.Pool{New: func() any { return &Filter{} }}

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f := filterPool.Get().(*Filter)
	f.cfg, f.cb = c, cb
	return f
}
