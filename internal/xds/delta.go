package xds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// wildcardName is the explicit wildcard subscription
// (xds_protocol#how-the-client-specifies-what-resources-to-return).
const wildcardName = "*"

// deltaWanted is the set of names a delta stream should be subscribed to:
// the names plus "*" for a wildcard.
func deltaWanted(v tsView) map[string]bool {
	names, wildcard := v.interest()
	if wildcard {
		names[wildcardName] = true
	}
	return names
}

// deltaSession runs one incremental stream until it fails or ctx ends.
func (m *Mux) deltaSession(ctx context.Context, conn *grpc.ClientConn, bo *jitteredBackoff) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	st, err := m.opener().delta(m.streamContext(ctx), conn)
	if err != nil {
		return err
	}
	m.connected.Set(1)
	respc := make(chan *discoveryv3.DeltaDiscoveryResponse)
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		recvLoop(ctx, st.Recv, respc, errc)
	}()

	first := true
	send := func(req *discoveryv3.DeltaDiscoveryRequest) error {
		if first || !m.nodeFirstOnly {
			req.Node = m.node
		}
		first = false
		return st.Send(req)
	}
	// A new stream: subscribe every name again and tell the server which
	// versions are already held (initial_resource_versions), so it need not
	// resend them (xds_protocol#incremental-xds, "reconnect").
	m.dirtyTypes()
	for _, v := range m.snapshot() {
		v.nonce = ""
		if len(v.watches) == 0 {
			continue
		}
		want := deltaWanted(v)
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: v.url, InitialResourceVersions: map[string]string{}}
		for n, r := range v.cache {
			if want[wildcardName] || want[n] {
				req.InitialResourceVersions[n] = r.Version
			}
		}
		// A wildcard alone is the legacy form: no names at all.
		if !(len(want) == 1 && want[wildcardName]) {
			req.ResourceNamesSubscribe = sortedNames(want)
		}
		v.sent = want
		if err := send(req); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case <-m.kick:
			for _, v := range m.dirtyTypes() {
				want := map[string]bool{}
				if len(v.watches) > 0 {
					want = deltaWanted(v)
					m.dropUninterested(v)
				}
				req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: v.url}
				for n := range want {
					if !v.sent[n] {
						req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
					}
				}
				for n := range v.sent {
					if !want[n] {
						req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
					}
				}
				v.sent = want
				primeNew(v)
				if len(req.ResourceNamesSubscribe)+len(req.ResourceNamesUnsubscribe) == 0 {
					continue
				}
				slices.Sort(req.ResourceNamesSubscribe)
				slices.Sort(req.ResourceNamesUnsubscribe)
				if err := send(req); err != nil {
					return err
				}
			}
		case resp := <-respc:
			bo.reset()
			m.connected.Set(1)
			if req := m.handleDelta(resp); req != nil {
				if err := send(req); err != nil {
					return err
				}
			}
		}
	}
}

// handleDelta validates and applies an incremental response and returns
// the ACK or NACK (nil for a type nobody subscribes to).
func (m *Mux) handleDelta(resp *discoveryv3.DeltaDiscoveryResponse) *discoveryv3.DeltaDiscoveryRequest {
	url, version := resp.GetTypeUrl(), resp.GetSystemVersionInfo()
	v, ok := m.lookup(url)
	if !ok || len(v.watches) == 0 {
		m.log.Debug("xds: ignoring delta response for a type without subscriptions", "type", url)
		return nil
	}
	v.nonce = resp.GetNonce()
	ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: url, ResponseNonce: v.nonce}
	names, wildcard := v.interest()
	var ds []decoded
	var errs []string
	// Envoy NACKs a name given twice, among the resources or in both the
	// resources and removed_resources (delta_subscription_state.cc,
	// handleGoodResponse).
	seen := make(map[string]bool, len(resp.GetResources())+len(resp.GetRemovedResources()))
	for _, r := range resp.GetResources() {
		if seen[r.GetName()] {
			errs = append(errs, fmt.Sprintf("duplicate name %s found among added/updated resources", r.GetName()))
			continue
		}
		seen[r.GetName()] = true
	}
	for _, n := range resp.GetRemovedResources() {
		if seen[n] {
			errs = append(errs, fmt.Sprintf("duplicate name %s found in the union of added+removed resources", n))
		}
		seen[n] = true
	}
	for _, r := range resp.GetResources() {
		if r.GetResource() == nil {
			// A TTL heartbeat: the resource is unchanged (xds_protocol#ttl).
			continue
		}
		if !wildcard && !names[r.GetName()] {
			continue // not subscribed: Envoy ignores it
		}
		d, err := decodeAny(url, r.GetResource())
		if err == nil && r.GetName() != d.name {
			err = fmt.Errorf("%s %q: resource name %q does not match", kindOf(url), d.name, r.GetName())
		}
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		d.version = r.GetVersion()
		ds = append(ds, d)
	}
	if len(errs) > 0 {
		err := errors.New(strings.Join(errs, "; "))
		for _, w := range v.watches {
			w.rejectUndelivered(version, err)
		}
		m.log.Warn("xds: NACK", "type", kindOf(url), "error", err)
		ack.ErrorDetail = errorDetail(err)
		return ack
	}
	next := make(map[string]*Resource, len(v.cache)+len(ds))
	for k, r := range v.cache {
		next[k] = r
	}
	next = mergeDecoded(next, v.cache, ds, version, time.Now())
	for _, n := range resp.GetRemovedResources() {
		delete(next, n)
	}
	if err := deliverAll(v.watches, version, next); err != nil {
		m.log.Warn("xds: NACK", "type", kindOf(url), "error", err)
		ack.ErrorDetail = errorDetail(err)
		return ack
	}
	v.cache, v.version = next, version
	return ack
}
