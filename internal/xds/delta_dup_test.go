package xds

import (
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/stats"
)

// TestDeltaDuplicateNames: a delta response naming a resource twice, or in
// both resources and removed_resources, is NACKed as Envoy does
// (delta_subscription_state.cc handleGoodResponse) and nothing is applied.
func TestDeltaDuplicateNames(t *testing.T) {
	cluster := func(name string) *discoveryv3.Resource {
		a, err := anypb.New(&clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(1e9)})
		if err != nil {
			t.Fatal(err)
		}
		return &discoveryv3.Resource{Name: name, Version: "1", Resource: a}
	}
	tests := []struct {
		name    string
		resp    *discoveryv3.DeltaDiscoveryResponse
		wantErr string
	}{
		{name: "twice among resources",
			resp:    &discoveryv3.DeltaDiscoveryResponse{Resources: []*discoveryv3.Resource{cluster("a"), cluster("a")}},
			wantErr: "duplicate name a found among added/updated resources"},
		{name: "added and removed",
			resp:    &discoveryv3.DeltaDiscoveryResponse{Resources: []*discoveryv3.Resource{cluster("a")}, RemovedResources: []string{"a"}},
			wantErr: "duplicate name a found in the union of added+removed resources"},
		{name: "distinct names", resp: &discoveryv3.DeltaDiscoveryResponse{Resources: []*discoveryv3.Resource{cluster("a"), cluster("b")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			applied := 0
			w := newWatch(ClusterType, nil, Callbacks{Apply: func(Update) error { applied++; return nil }},
				stats.NewStore().Scope("cluster_manager.cds."), 0, nil, slog.New(slog.DiscardHandler))
			m := &Mux{types: map[string]*typeState{ClusterType: {url: ClusterType, watches: []*watch{w}}}, log: slog.New(slog.DiscardHandler)}
			resp := proto.Clone(tc.resp).(*discoveryv3.DeltaDiscoveryResponse)
			resp.TypeUrl, resp.Nonce, resp.SystemVersionInfo = ClusterType, "n1", "v1"
			ack := m.handleDelta(resp)
			if ack == nil {
				t.Fatal("no ACK/NACK")
			}
			if tc.wantErr == "" {
				if ack.GetErrorDetail() != nil || applied != 1 {
					t.Fatalf("error_detail %v, applied %d; want an ACK and one apply", ack.GetErrorDetail(), applied)
				}
				return
			}
			if !strings.Contains(ack.GetErrorDetail().GetMessage(), tc.wantErr) || applied != 0 {
				t.Fatalf("error_detail %q, applied %d; want a NACK with %q and nothing applied", ack.GetErrorDetail().GetMessage(), applied, tc.wantErr)
			}
		})
	}
}

// TestErrorDetailUTF8: the NACK message is cut at maxErrorDetail bytes
// without splitting a character, so the request still encodes.
func TestErrorDetailUTF8(t *testing.T) {
	msg := strings.Repeat("é", maxErrorDetail) // 2 bytes each: any odd cut splits one
	st := errorDetail(errString(msg[1:]))
	if !utf8.ValidString(st.GetMessage()) || len(st.GetMessage()) > maxErrorDetail {
		t.Fatalf("message of %d bytes, valid UTF-8 %v", len(st.GetMessage()), utf8.ValidString(st.GetMessage()))
	}
	if _, err := proto.Marshal(&discoveryv3.DiscoveryRequest{ErrorDetail: st}); err != nil {
		t.Fatalf("NACK does not encode: %v", err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
