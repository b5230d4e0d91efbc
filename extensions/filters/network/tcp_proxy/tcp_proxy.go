package tcpproxy

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
	"github.com/herald-proxy/herald/internal/upstream"
)

func init() {
	netfilter.Register(netfilter.Extension[*tcpv3.TcpProxy]{
		Name:     "envoy.filters.network.tcp_proxy",
		Config:   &tcpv3.TcpProxy{},
		Build:    Build,
		Terminal: true,
	})
}

// defaultIdleTimeout is Envoy's tcp_proxy idle_timeout default (1 h).
const defaultIdleTimeout = time.Hour

// weightedCluster is one entry of weighted_clusters.
type weightedCluster struct {
	name   string
	weight uint64
}

// Filter is a built tcp_proxy. Immutable.
type Filter struct {
	clusters    *upstream.Manager
	single      string
	weighted    []weightedCluster
	totalWeight uint64
	idleTimeout time.Duration
	maxAttempts int
	accessLogs  []accesslog.Logger
	stats       *tcpStats
	// hashSourceIP: hash_policy source_ip, the connection's hash for
	// ring_hash and maglev clusters.
	hashSourceIP bool
	// tunnel is tunneling_config, nil when the connection goes over raw
	// TCP. Tunnels to HTTP/2 clusters are streams on the host's HTTP/2
	// pool (upstream.Host.HTTP2), shared with the cluster's other users.
	tunnel *tunnelConfig
}

var _ netfilter.Terminal = (*Filter)(nil)

// tcpStats are tcp.<stat_prefix>.* (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/network_filters/tcp_proxy_filter#statistics).
type tcpStats struct {
	cxTotal     *stats.Counter
	cxNoRoute   *stats.Counter
	cxRxBytes   *stats.Counter
	cxTxBytes   *stats.Counter
	idleTimeout *stats.Counter
}

// supported are the TcpProxy fields herald interprets; any other field
// that is set is an error naming it (STYLE.md §5).
var supported = []string{"stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "access_log", "max_connect_attempts", "hash_policy", "tunneling_config"}

// Build interprets a TcpProxy config once per snapshot.
func Build(cfg *tcpv3.TcpProxy, ctx netfilter.BuildContext) (netfilter.Filter, error) {
	var errs configerr.List
	errs = append(errs, configerr.RejectUnlisted(cfg, ctx.Path, nil, supported...)...)
	for i, wc := range cfg.GetWeightedClusters().GetClusters() {
		errs = append(errs, configerr.RejectUnlisted(wc, fmt.Sprintf("%s.weighted_clusters.clusters[%d]", ctx.Path, i), nil, "name", "weight")...)
	}
	mgr, _ := ctx.Clusters.(*upstream.Manager)
	f := &Filter{clusters: mgr, idleTimeout: defaultIdleTimeout, maxAttempts: 1}
	if v := cfg.GetIdleTimeout(); v != nil {
		f.idleTimeout = v.AsDuration() // 0 disables, as in Envoy
	}
	if v := cfg.GetMaxConnectAttempts(); v != nil {
		f.maxAttempts = int(v.GetValue())
	}
	switch {
	case cfg.GetCluster() != "":
		f.single = cfg.GetCluster()
	case cfg.GetWeightedClusters() != nil:
		for _, wc := range cfg.GetWeightedClusters().GetClusters() {
			f.weighted = append(f.weighted, weightedCluster{name: wc.GetName(), weight: uint64(wc.GetWeight())})
			f.totalWeight += uint64(wc.GetWeight())
		}
		if f.totalWeight == 0 {
			errs = append(errs, configerr.At(ctx.Path+".weighted_clusters", "weights sum to zero"))
		}
	default:
		errs = append(errs, configerr.At(ctx.Path, "one of cluster or weighted_clusters is required"))
	}
	errs = append(errs, f.buildHashPolicy(cfg, ctx.Path)...)
	tc, terrs := buildTunnelConfig(cfg.GetTunnelingConfig(), ctx.Path+".tunneling_config")
	errs = append(errs, terrs...)
	logs, lerrs := accesslog.BuildAll(cfg.GetAccessLog(), ctx.Path, ctx.Server)
	f.accessLogs = logs
	errs = append(errs, lerrs...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	f.tunnel = tc
	sc := ctx.Stats.Scope("tcp." + cfg.GetStatPrefix() + ".")
	f.stats = &tcpStats{
		cxTotal:     sc.Counter("downstream_cx_total"),
		cxNoRoute:   sc.Counter("downstream_cx_no_route"),
		cxRxBytes:   sc.Counter("downstream_cx_rx_bytes_total"),
		cxTxBytes:   sc.Counter("downstream_cx_tx_bytes_total"),
		idleTimeout: sc.Counter("idle_timeout"),
	}
	return f, nil
}

// buildHashPolicy interprets hash_policy: Envoy allows at most one
// (validate.rules max_items 1), of which herald supports source_ip.
func (f *Filter) buildHashPolicy(cfg *tcpv3.TcpProxy, path string) configerr.List {
	var errs configerr.List
	for i, hp := range cfg.GetHashPolicy() {
		hpath := fmt.Sprintf("%s.hash_policy[%d]", path, i)
		if i > 0 {
			errs = append(errs, configerr.At(hpath, "at most one hash_policy is allowed"))
			continue
		}
		switch {
		case hp.GetSourceIp() != nil:
			f.hashSourceIP = true
		case hp.GetFilterState() != nil:
			errs = append(errs, configerr.At(hpath+".filter_state", "filter_state is %s", configerr.NotSupported))
		default:
			errs = append(errs, configerr.At(hpath, "one of source_ip or filter_state is required"))
		}
	}
	return errs
}

// lbContext is the load balancer context of one connection: with
// hash_policy source_ip, Envoy's SourceIpHashMethod, the xxHash64 of the
// remote IP address's text (source/common/network/hash_policy.cc); without
// it hashing policies pick at random, as Envoy documents.
func (f *Filter) lbContext(remote netip.AddrPort) upstream.LBContext {
	if !f.hashSourceIP || !remote.IsValid() {
		return upstream.LBContext{}
	}
	var buf [64]byte
	return upstream.LBContext{Hash: xxhash.Sum64(remote.Addr().AppendTo(buf[:0])), HasHash: true}
}

// pickCluster chooses the cluster name for one connection: the
// per-connection cluster a filter set (envoy.tcp_proxy.cluster, e.g. by
// sni_cluster), else cluster or weighted_clusters.
func (f *Filter) pickCluster(c *network.Conn) string {
	if v, ok := c.FilterState(network.FilterStateTCPProxyCluster).(string); ok && v != "" {
		return v
	}
	if f.single != "" {
		return f.single
	}
	n := rand.Uint64N(f.totalWeight)
	for _, wc := range f.weighted {
		if n < wc.weight {
			return wc.name
		}
		n -= wc.weight
	}
	return f.weighted[len(f.weighted)-1].name
}

// ServeConn implements netfilter.Terminal.
func (f *Filter) ServeConn(c *network.Conn) {
	info := c.StreamInfo()
	defer func() {
		info.EndTime = time.Now()
		for _, l := range f.accessLogs {
			l.Log(info)
		}
	}()
	f.stats.cxTotal.Inc()
	name := f.pickCluster(c)
	info.UpstreamCluster = name
	cl := f.clusters.Cluster(name)
	if cl == nil {
		f.stats.cxNoRoute.Inc()
		info.SetFlag(streaminfo.NoClusterFound)
		return
	}
	up, err := f.connect(c, cl, info)
	if err != nil {
		info.SetFlag(streaminfo.UpstreamConnectionFailure)
		info.UpstreamTransportFailureReason = err.Error()
		return
	}
	if up == nil {
		return
	}
	defer up.Close()
	p := &pipe{down: c.Conn, up: up, idle: f.idleTimeout}
	p.run(info, f.stats)
	if ct, ok := up.(*countedTunnel); ok && f.tunnel.propagateTrailers {
		if tr := ct.trailers(); tr != nil {
			c.SetFilterState(FilterStateResponseTrailers, tr)
		}
	}
}

// connect makes up to max_connect_attempts attempts to reach a host of cl:
// a TCP connection, or with tunneling_config an HTTP tunnel. It returns
// nil, nil when the cluster has no healthy host (flag UH). When every
// attempt failed it returns the last error after recording what Envoy
// does once the attempts run out (Filter::establishUpstreamConnection,
// source/common/tcp_proxy/tcp_proxy.cc): response flag URX and the
// cluster's upstream_cx_connect_attempts_exceeded.
func (f *Filter) connect(c *network.Conn, cl *upstream.Cluster, info *streaminfo.Info) (upstreamConn, error) {
	var err error
	lbctx := f.lbContext(c.Remote)
	opts := upstreamTLSOptions(c)
	for attempt := 0; attempt < f.maxAttempts; attempt++ {
		h := cl.Pick(&lbctx)
		if h == nil {
			info.SetFlag(streaminfo.NoHealthyUpstream)
			return nil, nil
		}
		info.UpstreamHost = h.Address()
		if f.tunnel != nil {
			var up upstreamConn
			var resp *hhttp.Headers
			up, resp, err = f.openTunnel(c, cl, h, info, opts)
			if resp != nil && f.tunnel.propagateHeaders {
				// Envoy stores the response headers of every attempt,
				// refused ones included (HttpUpstream's DecoderShim).
				c.SetFilterState(FilterStateResponseHeaders, resp)
			}
			if err == nil {
				return up, nil
			}
			continue
		}
		var nc net.Conn
		nc, err = cl.DialTLS(c.Ctx, h, opts)
		if err == nil {
			info.UpstreamLocalAddress = nc.LocalAddr().String()
			return nc, nil
		}
	}
	info.SetFlag(streaminfo.UpstreamRetryLimitExceeded)
	cl.Stats.UpstreamCxConnectAttemptsExceeded.Inc()
	return nil, err
}

// upstreamTLSOptions are the transport socket options of the
// connection's upstream connections: the SNI a filter put in the
// envoy.network.upstream_server_name filter state (set_filter_state),
// which replaces the cluster's UpstreamTlsContext.sni as Envoy's
// serverNameOverride does (ClientContextImpl::newSsl,
// source/common/tls/context_impl.cc;
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/well_known_filter_state).
// An empty value changes nothing, as in Envoy (TransportSocketOptionsImpl
// makes an empty override none, source/common/network/
// transport_socket_options_impl.h). Clusters without TLS ignore them.
func upstreamTLSOptions(c *network.Conn) upstream.TLSOptions {
	sni, _ := c.FilterState(upstream.FilterStateUpstreamServerName).(string)
	return upstream.TLSOptions{ServerName: sni}
}

// pipe copies bytes both ways with half-close and an idle timeout shared by
// both directions.
type pipe struct {
	down     net.Conn
	up       upstreamConn
	idle     time.Duration
	last     atomic.Int64
	timedOut atomic.Bool
}

func (p *pipe) run(info *streaminfo.Info, st *tcpStats) {
	if p.idle > 0 {
		p.last.Store(time.Now().UnixNano())
		var t *time.Timer
		t = time.AfterFunc(p.idle, func() {
			since := time.Since(time.Unix(0, p.last.Load()))
			if since >= p.idle {
				p.timedOut.Store(true)
				p.down.Close()
				p.up.Close()
				return
			}
			t.Reset(p.idle - since)
		})
		defer t.Stop()
	}
	var wg sync.WaitGroup
	var sent, received uint64
	var upErr, downErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		received, upErr = p.copy(p.up, p.down, st.cxRxBytes)
	}()
	sent, downErr = p.copy(p.down, p.up, st.cxTxBytes)
	wg.Wait()
	info.BytesReceived = received
	info.BytesSent = sent
	info.UpstreamBytesSent = received
	info.UpstreamBytesReceived = sent
	if p.timedOut.Load() {
		st.idleTimeout.Inc()
		info.ConnectionTerminationDetails = "idle_timeout"
		return
	}
	if upErr != nil || downErr != nil {
		info.SetFlag(streaminfo.UpstreamConnectionTermination)
	}
}

type closeWriter interface{ CloseWrite() error }

// copy moves bytes from src to dst until src reaches EOF, then half-closes
// dst (Envoy forwards half-close by default). A read or write error closes
// both sides.
func (p *pipe) copy(dst io.Writer, src io.Reader, counter *stats.Counter) (uint64, error) {
	bufp := network.GetCopyBuffer()
	defer network.PutCopyBuffer(bufp)
	buf := *bufp
	var total uint64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				if dst != p.up {
					p.down.Close()
					p.up.Close()
				}
				// Writing upstream failed (it reset or closed, e.g. an
				// HTTP/2 tunnel whose server answered and reset the
				// stream): what it sent before still goes downstream —
				// the other direction reads it, then ends and closes both,
				// as Envoy flushes the downstream on an upstream close.
				return total, werr
			}
			total += uint64(n)
			counter.Add(uint64(n))
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(closeWriter); ok {
					cw.CloseWrite()
				} else if cl, ok := dst.(io.Closer); ok {
					cl.Close()
				}
				return total, nil
			}
			p.down.Close()
			p.up.Close()
			return total, err
		}
	}
}
