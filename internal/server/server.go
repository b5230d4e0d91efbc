package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/admin"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/listener"
	"github.com/herald-proxy/herald/internal/secret"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

// Server is one running herald process.
type Server struct {
	opts  Options
	log   *slog.Logger
	level *slog.LevelVar
	start time.Time

	store    *stats.Store
	clusters *upstream.Manager
	files    *accesslog.FileManager

	// dyn is the xDS side (client, LDS/CDS, applier); nil in unit tests.
	dyn *dynamic
	// rds shares RDS subscriptions among connection managers.
	rds rdsProviders
	// secrets holds static secrets and SDS providers (xds_sds.go); nil in
	// unit tests.
	secrets *secret.Manager

	// ctx lives as long as the server; listeners and their connections
	// run under it.
	ctx context.Context

	// cfg is the running bootstrap; a reload swaps it.
	cfg atomic.Pointer[bootstrap.Config]

	// applyMu serialises Apply (reloads, later xDS updates).
	applyMu sync.Mutex
	// stopping is set when shutdown begins; Apply refuses updates then.
	stopping atomic.Bool

	// Guarded by mu:
	mu             sync.Mutex
	running        []*runningListener   // in config order
	clusterUpdated map[string]time.Time // last_updated of each cluster
	applied        time.Time            // when the running bootstrap was applied
	reload         admin.ReloadStatus

	lmStats     listenerManagerStats
	reloadStats reloadStats
	// listenerDir is the running TCP listeners by address, for
	// use_original_dst hand-offs; commitListeners replaces it.
	listenerDir atomic.Pointer[listener.Directory]

	admin   *admin.Admin
	adminLn net.Listener

	state    atomic.Int32 // adminv3.ServerInfo_State
	hcFailed atomic.Bool
	quit     chan struct{}
	quitOnce sync.Once

	live   *stats.Gauge
	uptime *stats.Gauge
}

// Run loads the config and serves until a signal or /quitquitquit; it
// returns the process exit code. Errors are printed to stderr.
func Run(opts Options, stdout, stderr io.Writer) int {
	level := &slog.LevelVar{}
	lvl, err := ParseLevel(opts.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "herald: %v\n", err)
		return 1
	}
	level.Set(lvl)
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)
	if opts.Concurrency > 0 {
		runtime.GOMAXPROCS(opts.Concurrency)
	}

	cfg, err := bootstrap.Load(bootstrap.Options{Path: opts.ConfigPath, YAML: opts.ConfigYAML})
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	applyNodeFlags(cfg.Bootstrap, opts)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &Server{
		opts:           opts,
		log:            logger,
		level:          level,
		start:          time.Now(),
		store:          stats.NewStore(),
		ctx:            ctx,
		quit:           make(chan struct{}),
		clusterUpdated: map[string]time.Time{},
	}
	s.cfg.Store(cfg)
	s.live = s.store.Gauge("server.live")
	s.uptime = s.store.Gauge("server.uptime")
	s.store.Gauge("server.concurrency").Set(int64(runtime.GOMAXPROCS(0)))
	s.lmStats = newListenerManagerStats(s.store)
	s.reloadStats = newReloadStats(s.store)
	s.state.Store(int32(stateOf("PRE_INITIALIZING")))

	s.files = accesslog.NewFileManager(opts.FileFlushInterval)
	dyn, err := s.newDynamic(cfg)
	if err != nil {
		s.files.Close()
		printConfigError(stderr, err)
		return 1
	}
	s.dyn = dyn
	if err := s.newSecrets(ctx, cfg); err != nil {
		s.closeSecrets()
		s.files.Close()
		printConfigError(stderr, err)
		return 1
	}
	defer s.closeSecrets()
	s.clusters = upstream.NewManager(s.store, upstream.WithXDS(dyn.client), upstream.WithSecrets(s.secrets))
	s.clusters.SetAddedViaAPI(dyn.addedViaAPI)
	res := staticResources(cfg)
	p, err := s.prepare(ctx, res)
	if opts.Mode == "validate" {
		s.rds.stop()
		s.clusters.Close()
		s.files.Close()
		if err != nil {
			printConfigError(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "configuration '%s' OK\n", configName(opts))
		return 0
	}
	if err == nil {
		err = s.bind(p, res)
	}
	if err != nil {
		s.rds.stop()
		s.clusters.Close()
		s.files.Close()
		printConfigError(stderr, err)
		return 1
	}
	defer s.clusters.Close()
	defer s.files.Close()
	defer dyn.stop()
	defer s.rds.stop()

	// DNS clusters resolve before listeners open, so that the first
	// requests find hosts (Envoy's cluster warming at startup).
	if err := s.commitClusters(ctx, p, 0); err != nil {
		p.discard()
		fmt.Fprintf(stderr, "herald: %v\n", err)
		return 1
	}
	// The xDS client connects now: static EDS clusters, RDS of static
	// listeners and the LDS/CDS subscriptions use it (envoy_grpc dials a
	// static cluster, which is in place).
	dyn.client.Start(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	s.clusters.WaitReady(wctx)
	wcancel()
	// Static listeners with rds wait for their routes (each subscription's
	// initial_fetch_timeout bounds it).
	s.rds.waitReady(ctx)
	s.waitSecrets(ctx)
	if err := s.startAdmin(); err != nil {
		p.discard()
		fmt.Fprintf(stderr, "herald: admin: %v\n", err)
		return 1
	}
	s.commitListeners(p)
	s.mu.Lock()
	s.applied = time.Now()
	s.reload.LastApplied = s.applied
	s.mu.Unlock()
	if dyn.lds == nil && dyn.cds == nil {
		s.state.Store(int32(stateOf("LIVE")))
		s.live.Set(1)
		logger.Info("herald started", "listeners", len(p.steps), "version", opts.Version)
	} else {
		// Envoy's init manager: LIVE once CDS and then LDS initialized.
		s.state.Store(int32(stateOf("INITIALIZING")))
		logger.Info("herald started; waiting for the initial CDS and LDS", "static_listeners", len(p.steps), "version", opts.Version)
		go func() {
			s.startDynamic(ctx)
			if ctx.Err() == nil && !s.stopping.Load() {
				s.state.Store(int32(stateOf("LIVE")))
				s.live.Set(1)
				logger.Info("herald initialized", "listeners", len(s.listeners()))
			}
		}()
	}

	go s.tickUptime(ctx)
	if opts.WatchConfig > 0 {
		go s.watchConfig(ctx, opts.WatchConfig)
	}

	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(hups)
	go s.handleSignals(ctx, hups)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String())
	case <-s.quit:
		logger.Info("shutting down", "reason", "quitquitquit")
	}
	s.shutdown()
	return 0
}

func (s *Server) startAdmin() error {
	a := s.cfg.Load().Bootstrap.GetAdmin()
	if a.GetAddress() == nil {
		return nil
	}
	sa := a.GetAddress().GetSocketAddress()
	if sa == nil {
		return fmt.Errorf("admin.address: only socket_address is supported")
	}
	addr := net.JoinHostPort(sa.GetAddress(), fmt.Sprint(sa.GetPortValue()))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.adminLn = ln
	s.admin = admin.New(s, admin.Options{ProfilePath: a.GetProfilePath()})
	go s.admin.Serve(ln)
	if p := s.opts.AdminAddressPath; p != "" {
		if err := os.WriteFile(p, []byte(ln.Addr().String()), 0o644); err != nil {
			return fmt.Errorf("--admin-address-path: %w", err)
		}
	}
	s.log.Info("admin started", "address", ln.Addr().String())
	return nil
}

// shutdown drains: stop accepting, tell connections to finish, wait up to
// --drain-time-s, then close what is left. Envoy exits without draining on
// SIGTERM; herald drains, which is what users ask for.
func (s *Server) shutdown() {
	s.stopping.Store(true)
	s.state.Store(int32(stateOf("DRAINING")))
	s.live.Set(0)
	ls := s.listeners()
	for _, l := range ls {
		l.StopAccepting()
		l.Drain()
	}
	drain := s.opts.DrainTime
	if drain <= 0 {
		drain = 600 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	for _, l := range ls {
		l.Wait(ctx)
	}
	s.log.Debug("listeners drained")
	if s.admin != nil {
		actx, acancel := context.WithTimeout(context.Background(), time.Second)
		s.admin.Shutdown(actx)
		acancel()
	}
	s.log.Debug("admin stopped")
}

// listeners returns the running listeners in config order.
func (s *Server) listeners() []*listener.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*listener.Listener, len(s.running))
	for i, rl := range s.running {
		out[i] = rl.l
	}
	return out
}

func (s *Server) tickUptime(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		s.uptime.Set(int64(time.Since(s.start).Seconds()))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// applyNodeFlags applies --service-cluster/--service-node/--service-zone.
func applyNodeFlags(b *bootstrapv3.Bootstrap, opts Options) {
	if opts.ServiceCluster == "" && opts.ServiceNode == "" && opts.ServiceZone == "" {
		return
	}
	if b.Node == nil {
		b.Node = &corev3.Node{}
	}
	if opts.ServiceCluster != "" {
		b.Node.Cluster = opts.ServiceCluster
	}
	if opts.ServiceNode != "" {
		b.Node.Id = opts.ServiceNode
	}
	if opts.ServiceZone != "" {
		if b.Node.Locality == nil {
			b.Node.Locality = &corev3.Locality{}
		}
		b.Node.Locality.Zone = opts.ServiceZone
	}
}

func configName(opts Options) string {
	if opts.ConfigPath != "" {
		return opts.ConfigPath
	}
	return "--config-yaml"
}

// printConfigError prints every error of a failed load, one per line.
func printConfigError(w io.Writer, err error) {
	if l, ok := err.(configerr.List); ok {
		for _, e := range l {
			fmt.Fprintln(w, e.Error())
		}
		fmt.Fprintf(w, "herald: configuration rejected: %d error(s)\n", len(l))
		return
	}
	fmt.Fprintf(w, "%v\nherald: configuration rejected\n", err)
}

// cloneBootstrap is used by the config dump so that the admin never sees a
// message the server may still change.
func cloneBootstrap(b *bootstrapv3.Bootstrap) *bootstrapv3.Bootstrap {
	return proto.Clone(b).(*bootstrapv3.Bootstrap)
}
