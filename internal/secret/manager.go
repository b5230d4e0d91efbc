package secret

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/xds"
)

// DefaultPollInterval is how often the certificate files an SDS secret
// names are checked for a rotation. Envoy watches their directories with
// inotify (a move into them); herald polls their identity, size and mtime.
const DefaultPollInterval = 100 * time.Millisecond

// Options configure a Manager.
type Options struct {
	// Client subscribes SDS secrets; nil makes sds_config a config error
	// (static secrets still work).
	Client *xds.Client
	// Stats is the store for sds.<name>.* stats; nil means a private store.
	Stats *stats.Store
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// PollInterval is how often secret files are checked; zero means
	// DefaultPollInterval.
	PollInterval time.Duration
}

// Manager holds the static secrets and the SDS providers of one server.
// Safe for concurrent use.
type Manager struct {
	opts Options
	ctx  context.Context
	stop context.CancelFunc
	done chan struct{}

	// static is the current bootstrap's static_resources.secrets.
	static atomic.Pointer[staticSet]

	mu        sync.Mutex
	providers map[string]*Provider // by config source + name

	// updateMu serialises secret installs: a TLS context that follows two
	// secrets builds each candidate against the other's installed value.
	updateMu sync.Mutex
}

type staticSet struct {
	byName  map[string]*tlsv3.Secret
	list    []*tlsv3.Secret
	updated time.Time
}

// NewManager returns a manager with no secrets. Providers it creates fetch
// and watch files until ctx ends or Close is called.
func NewManager(ctx context.Context, opts Options) *Manager {
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	m := &Manager{opts: opts, providers: map[string]*Provider{}, done: make(chan struct{})}
	m.ctx, m.stop = context.WithCancel(ctx)
	m.static.Store(&staticSet{byName: map[string]*tlsv3.Secret{}})
	go m.watchFiles()
	return m
}

// Close stops every provider and the file watcher, and waits for them.
func (m *Manager) Close() {
	m.stop()
	<-m.done
	for _, p := range m.all() {
		p.close()
	}
}

// CheckStatic validates static_resources.secrets: every secret has a type
// and names are unique per type, as Envoy's SecretManagerImpl::addStaticSecret
// ("Duplicate static TlsCertificate secret name x"). path is
// "static_resources.secrets".
func CheckStatic(secrets []*tlsv3.Secret, path string) configerr.List {
	var errs configerr.List
	seen := map[string]bool{}
	for i, s := range secrets {
		p := fmt.Sprintf("%s[%d]", path, i)
		kind := Kind(s)
		if kind == "" {
			// Envoy: "Secret type not implemented".
			errs = append(errs, configerr.At(p, "secret %q has no type (tls_certificate, validation_context, session_ticket_keys or generic_secret)", s.GetName()))
			continue
		}
		key := kind + "\x00" + s.GetName()
		if seen[key] {
			errs = append(errs, configerr.At(p+".name", "duplicate static %s secret name %s", kindNames[kind], s.GetName()))
			continue
		}
		seen[key] = true
	}
	return errs
}

// kindNames are the type names of Envoy's duplicate-secret messages.
var kindNames = map[string]string{
	"tls_certificate":     "TlsCertificate",
	"validation_context":  "CertificateValidationContext",
	"session_ticket_keys": "TlsSessionTicketKeys",
	"generic_secret":      "GenericSecret",
}

// Kind is the field name of the secret's type ("tls_certificate",
// "validation_context", "session_ticket_keys", "generic_secret"), or "".
func Kind(s *tlsv3.Secret) string {
	switch s.GetType().(type) {
	case *tlsv3.Secret_TlsCertificate:
		return "tls_certificate"
	case *tlsv3.Secret_ValidationContext:
		return "validation_context"
	case *tlsv3.Secret_SessionTicketKeys:
		return "session_ticket_keys"
	case *tlsv3.Secret_GenericSecret:
		return "generic_secret"
	}
	return ""
}

// SetStatic makes secrets the static secrets that TLS contexts built from
// now on find by name (CheckStatic them first). Contexts built before keep
// the values they read. A reload sets the new bootstrap's secrets before
// it builds, and restores the old ones if the reload is rejected.
func (m *Manager) SetStatic(secrets []*tlsv3.Secret) {
	set := &staticSet{byName: make(map[string]*tlsv3.Secret, len(secrets)), list: secrets, updated: time.Now()}
	for _, s := range secrets {
		if _, dup := set.byName[s.GetName()]; !dup {
			set.byName[s.GetName()] = s
		}
	}
	m.static.Store(set)
}

// Statics returns the static secrets, for saving before a reload.
func (m *Manager) Statics() []*tlsv3.Secret { return m.static.Load().list }

// Static returns the static secret name, or nil: what an SdsSecretConfig
// without sds_config refers to (Envoy: "Unknown static secret: name").
func (m *Manager) Static(name string) *tlsv3.Secret {
	return m.static.Load().byName[name]
}

// Provider returns the shared provider of secret name from src, creating
// and starting its subscription on first use (Envoy's
// SecretManagerImpl::findOrCreate*Provider: one SdsApi per config source
// and name). Its stats are under sds.<name>.
func (m *Manager) Provider(src *corev3.ConfigSource, name string) (*Provider, error) {
	if m.opts.Client == nil {
		return nil, errors.New("sds_config needs the server's xDS client")
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(src)
	if err != nil {
		return nil, err
	}
	key := string(b) + "\x00" + name
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.providers[key]; p != nil {
		return p, nil
	}
	// Envoy: "sds.<secret name>." (SdsApi's scope).
	scope := m.opts.Stats.Scope("sds." + name + ".")
	p := newProvider(m, name, scope)
	sub, err := m.opts.Client.Subscribe(src, xds.SecretType, []string{name}, xds.Callbacks{Apply: p.apply}, scope)
	if err != nil {
		return nil, err
	}
	p.sub = sub
	timeout := xds.DefaultInitialFetchTimeout
	if d := src.GetInitialFetchTimeout(); d != nil {
		timeout = d.AsDuration()
	}
	if timeout > 0 {
		p.timer = time.AfterFunc(timeout, p.markReady)
	}
	m.providers[key] = p
	sub.Start(m.ctx)
	return p, nil
}

// all returns the providers sorted by name.
func (m *Manager) all() []*Provider {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Provider, 0, len(m.providers))
	for _, p := range m.providers {
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// WaitReady waits until every provider had its first secret, a rejected
// update or its initial_fetch_timeout, or ctx ends: Envoy's listener and
// cluster warming on their SdsApi init targets.
func (m *Manager) WaitReady(ctx context.Context) {
	for _, p := range m.all() {
		select {
		case <-p.Ready():
		case <-ctx.Done():
			return
		}
	}
}

// watchFiles polls the files of every provider's current secret and
// installs a rotation (Envoy's SdsApi::onWatchUpdate).
func (m *Manager) watchFiles() {
	defer close(m.done)
	t := time.NewTicker(m.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range m.all() {
			p.checkFiles()
		}
	}
}
