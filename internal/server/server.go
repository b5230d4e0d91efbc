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
	"github.com/herald-proxy/herald/internal/snapshot"
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

	cfg  *bootstrap.Config
	snap atomic.Pointer[snapshot.Snapshot]

	mu        sync.Mutex
	listeners []*listener.Listener

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

	s := &Server{
		opts:  opts,
		log:   logger,
		level: level,
		start: time.Now(),
		store: stats.NewStore(),
		cfg:   cfg,
		quit:  make(chan struct{}),
	}
	s.live = s.store.Gauge("server.live")
	s.uptime = s.store.Gauge("server.uptime")
	s.store.Gauge("server.concurrency").Set(int64(runtime.GOMAXPROCS(0)))
	s.state.Store(int32(stateOf("PRE_INITIALIZING")))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if opts.Mode == "validate" {
		if err := s.build(ctx, true); err != nil {
			printConfigError(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "configuration '%s' OK\n", configName(opts))
		return 0
	}

	if err := s.build(ctx, false); err != nil {
		printConfigError(stderr, err)
		return 1
	}
	defer s.clusters.Close()
	defer s.files.Close()

	// DNS clusters resolve before listeners open, so that the first
	// requests find hosts (Envoy's cluster warming at startup).
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	s.clusters.WaitReady(wctx)
	wcancel()
	if err := s.startAdmin(); err != nil {
		fmt.Fprintf(stderr, "herald: admin: %v\n", err)
		return 1
	}
	if err := s.startListeners(ctx); err != nil {
		fmt.Fprintf(stderr, "herald: %v\n", err)
		s.stopListeners()
		return 1
	}
	s.state.Store(int32(stateOf("LIVE")))
	s.live.Set(1)
	logger.Info("herald started", "listeners", len(s.listeners), "version", opts.Version)

	go s.tickUptime(ctx)

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

// build loads clusters and builds the snapshot; in validate mode nothing
// is started.
func (s *Server) build(ctx context.Context, validate bool) error {
	b := s.cfg.Bootstrap
	s.files = accesslog.NewFileManager(s.opts.FileFlushInterval)
	s.clusters = upstream.NewManager(s.store)
	clusters := b.GetStaticResources().GetClusters()
	var errs configerr.List
	if err := s.clusters.Apply(ctx, clusters, func(i int) string {
		return fmt.Sprintf("static_resources.clusters[%d]", i)
	}); err != nil {
		errs = append(errs, configerr.Collect(err, "static_resources.clusters", s.cfg.Index)...)
	}
	snap, err := snapshot.Build(b, snapshot.Deps{Stats: s.store, Clusters: s.clusters, Server: s})
	if err != nil {
		errs = append(errs, configerr.Collect(err, "static_resources", s.cfg.Index)...)
	}
	if err := errs.Err(); err != nil {
		return err
	}
	if validate {
		s.clusters.Close()
		s.files.Close()
	}
	s.snap.Store(snap)
	return nil
}

func (s *Server) startListeners(ctx context.Context) error {
	snap := s.snap.Load()
	for _, lc := range snap.Listeners {
		l, err := listener.Start(ctx, lc, s.store)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.listeners = append(s.listeners, l)
		s.mu.Unlock()
		s.log.Info("listener started", "name", lc.Name, "address", l.Bound().String())
	}
	s.store.Gauge("listener_manager.total_listeners_active").Set(int64(len(snap.Listeners)))
	return nil
}

func (s *Server) startAdmin() error {
	a := s.cfg.Bootstrap.GetAdmin()
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
	s.state.Store(int32(stateOf("DRAINING")))
	s.live.Set(0)
	s.mu.Lock()
	ls := append([]*listener.Listener(nil), s.listeners...)
	s.mu.Unlock()
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

func (s *Server) stopListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		l.CloseAll()
	}
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
