package setfilterstate

import (
	"fmt"
	"sort"
	"strings"

	sfscommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/set_filter_state/v3"
	setfilterstatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/set_filter_state/v3"

	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/upstream"
)

func init() {
	netfilter.Register(netfilter.Extension[*setfilterstatev3.Config]{
		Name:   Name,
		Config: &setfilterstatev3.Config{},
		Build:  Build,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.network.set_filter_state"

// factoryString is Envoy's generic string object factory, for keys that
// are not well-known (FilterStateValue.factory_key).
const factoryString = "envoy.string"

// factories are the object factories herald has: each makes the object a
// key's readers expect from the formatted bytes. Every one herald knows
// holds a string: the SNI of upstream TLS (tcp_proxy), the per-connection
// tcp_proxy cluster, and Envoy's generic string. Envoy fails the config
// for a factory it does not know ("'%s' does not have an object factory",
// source/extensions/filters/common/set_filter_state/filter_config.cc).
var factories = map[string]struct{}{
	upstream.FilterStateUpstreamServerName: {},
	network.FilterStateTCPProxyCluster:     {},
	factoryString:                          {},
}

// valueFields are the FilterStateValue fields herald interprets. read_only
// has no effect in Envoy (deprecated). shared_with_upstream shares the
// object with upstream internal connections, which herald does not make
// (no internal upstream transport), so it has nothing to share with.
var valueFields = []string{"object_key", "factory_key", "format_string", "read_only", "shared_with_upstream", "skip_if_empty"}

// value is one built FilterStateValue. Immutable.
type value struct {
	key         string
	format      *accesslog.Formatter
	skipIfEmpty bool
}

// Filter is a built set_filter_state. Immutable.
type Filter struct {
	onNewConnection []value
}

var _ netfilter.ConnectionFilter = (*Filter)(nil)

// Build interprets a set_filter_state Config once per snapshot.
func Build(cfg *setfilterstatev3.Config, ctx netfilter.BuildContext) (netfilter.Filter, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, nil, "on_new_connection")
	f := &Filter{}
	for i, v := range cfg.GetOnNewConnection() {
		b, verrs := buildValue(v, fmt.Sprintf("%s.on_new_connection[%d]", ctx.Path, i))
		errs = append(errs, verrs...)
		f.onNewConnection = append(f.onNewConnection, b)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

// buildValue checks one FilterStateValue: Envoy's Config::parse looks the
// object factory up by factory_key, or by object_key when it is empty.
func buildValue(v *sfscommonv3.FilterStateValue, path string) (value, configerr.List) {
	errs := configerr.CheckFields(v, path, valueFields...)
	b := value{key: v.GetObjectKey(), skipIfEmpty: v.GetSkipIfEmpty()}
	if b.key == "" {
		errs = append(errs, configerr.At(path+".object_key", "object_key is required"))
	}
	factory, fpath := v.GetFactoryKey(), path+".factory_key"
	if factory == "" {
		factory, fpath = b.key, path+".object_key"
	}
	if _, ok := factories[factory]; !ok && factory != "" {
		errs = append(errs, &configerr.FieldError{Path: fpath,
			Msg:  fmt.Sprintf("'%s' does not have an object factory", factory),
			Hint: "herald has " + strings.Join(factoryNames(), ", ") + `; use factory_key "envoy.string" for a custom key`})
	}
	if v.GetFormatString() == nil {
		errs = append(errs, configerr.At(path+".format_string", "format_string is required"))
		return b, errs
	}
	fm, err := accesslog.FormatterFromProto(v.GetFormatString(), path+".format_string")
	if err != nil {
		errs = append(errs, configerr.Collect(err, path+".format_string", nil)...)
	}
	b.format = fm
	return b, errs
}

func factoryNames() []string {
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// OnNewConnection implements netfilter.ConnectionFilter: Envoy's
// SetFilterState::onNewConnection with Config::updateFilterState, in
// order: each value is formatted against the connection (no request, so
// request operators have no value), skipped when empty with
// skip_if_empty, else stored for the connection's lifetime, replacing an
// earlier value of the key. It never closes the connection.
func (f *Filter) OnNewConnection(c *network.Conn) bool {
	if len(f.onNewConnection) == 0 {
		return true
	}
	// The connection's stream info, as Envoy formats against it
	// (SetFilterState::onNewConnection): addresses, SNI, JA3 and the
	// listener filters' dynamic metadata.
	info := c.StreamInfo()
	var buf []byte
	for i := range f.onNewConnection {
		v := &f.onNewConnection[i]
		buf = v.format.Format(buf[:0], info)
		if len(buf) == 0 && v.skipIfEmpty {
			continue
		}
		c.SetFilterState(v.key, string(buf))
	}
	return true
}
