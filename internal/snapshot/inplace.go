package snapshot

import (
	"bytes"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// FilterChainOnlyChange reports whether a running listener prev can take
// next as Envoy's filter-chain-only update (listener.UpdateFilterChains):
// the two differ in nothing but filter_chains, default_filter_chain and
// filter_chain_matcher, and next has at least one filter chain. Any other
// change (address, listener filters, metadata, buffer limits...) is a full
// update: the whole listener drains.
//
// Envoy: ListenerImpl::supportUpdateFilterChain and
// ListenerMessageUtil::filterChainOnlyChange ("if the listener metadata is
// updated within the new listener config ... the entire listener is
// drained and updated",
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/listeners/listener_filters#filter-chain-only-update).
// Envoy compares the rest with MessageDifferencer in EQUIVALENT mode and
// repeated fields as sets; herald compares them exactly (proto.Equal), so a
// listener whose listener_filters were only reordered takes a full update
// here: a stricter test, never a wrong in-place update.
func FilterChainOnlyChange(prev, next *listenerv3.Listener) bool {
	// "Full listener update currently rejects tcp listener having 0 filter
	// chain" (supportUpdateFilterChain): a listener with only a default
	// chain is always updated whole.
	if len(next.GetFilterChains()) == 0 || prev == nil {
		return false
	}
	return equalExceptChains(prev.ProtoReflect(), next.ProtoReflect())
}

// inPlaceFields are the Listener fields a filter-chain-only update may
// change (Envoy's filterChainOnlyChange ignores exactly these).
var inPlaceFields = map[protoreflect.Name]bool{
	"filter_chains":        true,
	"default_filter_chain": true,
	"filter_chain_matcher": true,
}

// equalExceptChains compares every field of two listeners but
// inPlaceFields, without copying them.
func equalExceptChains(a, b protoreflect.Message) bool {
	fields := a.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if inPlaceFields[fd.Name()] {
			continue
		}
		if a.Has(fd) != b.Has(fd) {
			return false
		}
		if a.Has(fd) && !a.Get(fd).Equal(b.Get(fd)) {
			return false
		}
	}
	return bytes.Equal(a.GetUnknown(), b.GetUnknown())
}

// DiffFilterChains pairs the chains of next with identical chains of prev.
// Chains are numbered as listener.Config numbers them: filter_chains in
// order, then default_filter_chain. keep[i] is the index of the prev chain
// that next's chain i continues, or -1 when it is new or changed; a prev
// chain no entry names is drained by the update.
//
// Envoy (ListenerImpl::diffFilterChain): a filter chain survives when the
// new listener has a FilterChain message equal to it, name, metadata and
// filter_chain_match included; the default filter chain survives only as
// the default filter chain.
func DiffFilterChains(prev, next *listenerv3.Listener) []int {
	byMsg := make(map[string][]int, len(prev.GetFilterChains()))
	for i, fc := range prev.GetFilterChains() {
		if k, ok := chainKey(fc); ok {
			byMsg[k] = append(byMsg[k], i)
		}
	}
	keep := make([]int, 0, len(next.GetFilterChains())+1)
	for _, fc := range next.GetFilterChains() {
		k, ok := chainKey(fc)
		same := byMsg[k]
		if !ok || len(same) == 0 {
			keep = append(keep, -1)
			continue
		}
		// Identical chains pair up in order, each running chain once.
		keep = append(keep, same[0])
		byMsg[k] = same[1:]
	}
	if d := next.GetDefaultFilterChain(); d != nil {
		k := -1
		if pd := prev.GetDefaultFilterChain(); pd != nil && proto.Equal(pd, d) {
			k = len(prev.GetFilterChains())
		}
		keep = append(keep, k)
	}
	return keep
}

// chainKey is a filter chain's deterministic encoding: equal keys are
// equal messages. ok is false when the chain does not marshal; it is then
// never paired, so it drains as a changed chain would.
func chainKey(fc *listenerv3.FilterChain) (key string, ok bool) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(fc)
	if err != nil {
		return "", false
	}
	return string(b), true
}
