// Package registry is the generic registry every extension kind uses: an
// extension registers, in its package's init, under the type URL of its empty
// config message and under its well-known Envoy name. Duplicates panic: they
// are programmer errors caught by any test run.
//
// It imports nothing of herald's.
package registry

import (
	"fmt"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"
)

// TypeURLPrefix is the prefix of every type URL in an Any.
const TypeURLPrefix = "type.googleapis.com/"

// TypeURL returns the type URL of m's message type.
func TypeURL(m proto.Message) string {
	return TypeURLPrefix + string(proto.MessageName(m))
}

// Registry maps type URLs and Envoy names to extensions of one kind.
type Registry[E any] struct {
	kind   string
	mu     sync.RWMutex
	byURL  map[string]E
	byName map[string]E
}

// New returns an empty registry; kind names it in errors ("HTTP filter").
func New[E any](kind string) *Registry[E] {
	return &Registry[E]{kind: kind, byURL: map[string]E{}, byName: map[string]E{}}
}

// Kind returns what the registry holds, for error messages.
func (r *Registry[E]) Kind() string { return r.kind }

// Register adds e under name and the type URL of cfg (and of every extra
// message, for extensions that accept several config types). It panics on a
// duplicate or an empty name.
func (r *Registry[E]) Register(name string, cfg proto.Message, e E, extra ...proto.Message) {
	if name == "" || cfg == nil {
		panic(fmt.Sprintf("registry: %s registered without a name or config message", r.kind))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.byName[name]; dup {
		panic(fmt.Sprintf("registry: %s %q registered twice", r.kind, name))
	}
	r.byName[name] = e
	for _, m := range append([]proto.Message{cfg}, extra...) {
		url := TypeURL(m)
		if _, dup := r.byURL[url]; dup {
			panic(fmt.Sprintf("registry: %s type %q registered twice", r.kind, url))
		}
		r.byURL[url] = e
	}
}

// ByTypeURL returns the extension registered for url.
func (r *Registry[E]) ByTypeURL(url string) (E, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byURL[url]
	return e, ok
}

// ByName returns the extension registered under the Envoy name.
func (r *Registry[E]) ByName(name string) (E, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byName[name]
	return e, ok
}

// Names returns the registered Envoy names, sorted.
func (r *Registry[E]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TypeURLs returns the registered type URLs, sorted.
func (r *Registry[E]) TypeURLs() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.byURL))
	for n := range r.byURL {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
