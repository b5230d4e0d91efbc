package upstream

import (
	"bufio"
	"fmt"
	"io"
	"strconv"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/upstream/outlier"
)

// WriteClusters writes admin /clusters in Envoy's text format, clusters
// sorted by name, following Envoy's ClustersHandler::writeClustersAsText:
// observability name, with outlier detection the cluster's success rate
// average and ejection threshold (external and local origin), circuit
// breaker settings for the default and high priorities, added_via_api,
// then per host its stats (sorted by name), hostname, health_flags,
// weight, locality, canary, priority and success rates (-1: no outlier
// detection, or too few requests in the last interval).
// https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--clusters
func (m *Manager) WriteClusters(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, c := range m.Clusters() {
		n := c.name
		fmt.Fprintf(bw, "%s::observability_name::%s\n", n, c.observabilityName)
		if c.od != nil {
			// Envoy's addOutlierInfo prints these with fmt's {:g}.
			ext, local := c.od.SuccessRate(outlier.ExternalOrigin), c.od.SuccessRate(outlier.LocalOrigin)
			fmt.Fprintf(bw, "%s::outlier::success_rate_average::%s\n", n, formatG(ext.Average))
			fmt.Fprintf(bw, "%s::outlier::success_rate_ejection_threshold::%s\n", n, formatG(ext.EjectionThreshold))
			fmt.Fprintf(bw, "%s::outlier::local_origin_success_rate_average::%s\n", n, formatG(local.Average))
			fmt.Fprintf(bw, "%s::outlier::local_origin_success_rate_ejection_threshold::%s\n", n, formatG(local.EjectionThreshold))
		}
		for i, prio := range []string{"default", "high"} {
			t := c.thresholds[i]
			fmt.Fprintf(bw, "%s::%s_priority::max_connections::%d\n", n, prio, t.MaxConnections)
			fmt.Fprintf(bw, "%s::%s_priority::max_pending_requests::%d\n", n, prio, t.MaxPendingRequests)
			fmt.Fprintf(bw, "%s::%s_priority::max_requests::%d\n", n, prio, t.MaxRequests)
			fmt.Fprintf(bw, "%s::%s_priority::max_retries::%d\n", n, prio, t.MaxRetries)
		}
		fmt.Fprintf(bw, "%s::added_via_api::%t\n", n, m.isAddedViaAPI(n))
		for _, h := range c.hostSet.Load().Hosts {
			a := h.Address()
			// Envoy sorts counters and gauges together by name.
			st := h.Stats.list()
			sortHostStats(st)
			for _, s := range st {
				fmt.Fprintf(bw, "%s::%s::%s::%d\n", n, a, s.name, s.value)
			}
			fmt.Fprintf(bw, "%s::%s::hostname::%s\n", n, a, h.hostname)
			fmt.Fprintf(bw, "%s::%s::health_flags::%s\n", n, a, h.HealthFlags())
			fmt.Fprintf(bw, "%s::%s::weight::%d\n", n, a, h.Weight())
			pl := h.Placement()
			fmt.Fprintf(bw, "%s::%s::region::%s\n", n, a, pl.Locality.Region)
			fmt.Fprintf(bw, "%s::%s::zone::%s\n", n, a, pl.Locality.Zone)
			fmt.Fprintf(bw, "%s::%s::sub_zone::%s\n", n, a, pl.Locality.SubZone)
			fmt.Fprintf(bw, "%s::%s::canary::false\n", n, a)
			fmt.Fprintf(bw, "%s::%s::priority::%d\n", n, a, pl.Priority)
			ext, local := h.successRates()
			fmt.Fprintf(bw, "%s::%s::success_rate::%s\n", n, a, formatShortest(ext))
			fmt.Fprintf(bw, "%s::%s::local_origin_success_rate::%s\n", n, a, formatShortest(local))
		}
	}
	return bw.Flush()
}

// successRates returns the host's external and local origin success rates
// from the last outlier detection interval, -1 when unknown.
func (h *Host) successRates() (ext, local float64) {
	if h.od == nil {
		return -1, -1
	}
	return h.od.SuccessRate(outlier.ExternalOrigin), h.od.SuccessRate(outlier.LocalOrigin)
}

// formatG formats v as fmt's {:g} (printf %g: six significant digits).
func formatG(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// formatShortest formats v as fmt's {} for a double: the shortest
// representation that reads back the same (-1, 50, 33.333333333333336).
func formatShortest(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func sortHostStats(st []hostStat) {
	for i := 1; i < len(st); i++ {
		for j := i; j > 0 && st[j].name < st[j-1].name; j-- {
			st[j], st[j-1] = st[j-1], st[j]
		}
	}
}

// ClustersProto returns admin /clusters?format=json as Envoy's
// admin.v3.Clusters message.
func (m *Manager) ClustersProto() *adminv3.Clusters {
	out := &adminv3.Clusters{}
	for _, c := range m.Clusters() {
		cs := &adminv3.ClusterStatus{
			Name:              c.name,
			ObservabilityName: c.observabilityName,
			AddedViaApi:       m.isAddedViaAPI(c.name),
			CircuitBreakers:   &clusterv3.CircuitBreakers{},
		}
		if c.od != nil {
			// Envoy sets the thresholds only when positive.
			if v := c.od.SuccessRate(outlier.ExternalOrigin).EjectionThreshold; v > 0 {
				cs.SuccessRateEjectionThreshold = &typev3.Percent{Value: v}
			}
			if v := c.od.SuccessRate(outlier.LocalOrigin).EjectionThreshold; v > 0 {
				cs.LocalOriginSuccessRateEjectionThreshold = &typev3.Percent{Value: v}
			}
		}
		for i, prio := range []corev3.RoutingPriority{corev3.RoutingPriority_DEFAULT, corev3.RoutingPriority_HIGH} {
			t := c.thresholds[i]
			cs.CircuitBreakers.Thresholds = append(cs.CircuitBreakers.Thresholds, &clusterv3.CircuitBreakers_Thresholds{
				Priority:           prio,
				MaxConnections:     wrapperspb.UInt32(t.MaxConnections),
				MaxPendingRequests: wrapperspb.UInt32(t.MaxPendingRequests),
				MaxRequests:        wrapperspb.UInt32(t.MaxRequests),
				MaxRetries:         wrapperspb.UInt32(t.MaxRetries),
			})
		}
		for _, h := range c.hostSet.Load().Hosts {
			ap := h.AddrPort()
			hs := &adminv3.HostStatus{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address:       ap.Addr().String(),
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
				}}},
				HealthStatus: hostHealthStatus(h.HealthFlags()),
				Weight:       h.Weight(),
				Hostname:     h.hostname,
			}
			pl := h.Placement()
			hs.Locality = &corev3.Locality{Region: pl.Locality.Region, Zone: pl.Locality.Zone, SubZone: pl.Locality.SubZone}
			hs.Priority = pl.Priority
			// Envoy sets the success rates when not negative.
			ext, local := h.successRates()
			if ext >= 0 {
				hs.SuccessRate = &typev3.Percent{Value: ext}
			}
			if local >= 0 {
				hs.LocalOriginSuccessRate = &typev3.Percent{Value: local}
			}
			for _, s := range h.Stats.list() {
				t := adminv3.SimpleMetric_GAUGE
				if s.counter {
					t = adminv3.SimpleMetric_COUNTER
				}
				hs.Stats = append(hs.Stats, &adminv3.SimpleMetric{Type: t, Value: s.value, Name: s.name})
			}
			cs.HostStatuses = append(cs.HostStatuses, hs)
		}
		out.ClusterStatuses = append(out.ClusterStatuses, cs)
	}
	return out
}

func hostHealthStatus(f HealthFlags) *adminv3.HostHealthStatus {
	st := &adminv3.HostHealthStatus{
		FailedActiveHealthCheck:    f&FailedActiveHC != 0,
		FailedOutlierCheck:         f&FailedOutlierCheck != 0,
		ExcludedViaImmediateHcFail: f&ExcludedViaImmediateHCFail != 0,
		ActiveHcTimeout:            f&ActiveHCTimeout != 0,
		EdsHealthStatus:            corev3.HealthStatus_HEALTHY,
	}
	if f&FailedEDSHealth != 0 {
		st.EdsHealthStatus = corev3.HealthStatus_UNHEALTHY
	}
	return st
}

// WriteClustersJSON writes admin /clusters?format=json: ClustersProto
// through protojson with proto field names, pretty-printed, as Envoy's
// MessageUtil::getJsonStringFromMessage does.
func (m *Manager) WriteClustersJSON(w io.Writer) error {
	b, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true, Indent: " "}.Marshal(m.ClustersProto())
	if err != nil {
		return fmt.Errorf("upstream: /clusters json: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
