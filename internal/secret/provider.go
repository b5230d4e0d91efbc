package secret

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/filewatch"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/xds"
)

// Watcher is a TLS context that follows one or more providers.
type Watcher interface {
	// PrepareSecret builds the context with s as p's secret and every other
	// provider's current one. It returns the function that installs the
	// result, or an error that rejects s (the previous secret stays). It
	// is called with the manager's update lock held, one at a time.
	PrepareSecret(p *Provider, s *tlsv3.Secret) (commit func(), err error)
}

// Provider is one SDS secret: Envoy's SdsApi. The secret it holds is
// resolved: the files its DataSources name are read into inline_bytes.
type Provider struct {
	// Immutable after creation:
	m                 *Manager
	name              string
	sub               xds.Subscription
	timer             *time.Timer // initial_fetch_timeout; nil when none
	keyRotationFailed *stats.Counter

	// current is the installed secret (resolved); nil before the first.
	current atomic.Pointer[tlsv3.Secret]

	ready     chan struct{}
	readyOnce sync.Once

	mu       sync.Mutex
	watchers []weakWatcher
	res      *xds.Resource         // last accepted resource, as received
	files    []string              // files the secret names
	dir      string                // its watched_directory, "" if none
	print    filewatch.Fingerprint // of files and dir when last read
}

// weakWatcher finds a watcher that is still alive; nil once it is gone.
type weakWatcher func() Watcher

func newProvider(m *Manager, name string, scope stats.Scope) *Provider {
	return &Provider{
		m:    m,
		name: name,
		// Envoy: SdsApi's ALL_SDS_API_STATS (key_rotation_failed).
		keyRotationFailed: scope.Counter("key_rotation_failed"),
		ready:             make(chan struct{}),
	}
}

// Name is the secret's name.
func (p *Provider) Name() string { return p.name }

// Current returns the installed secret, or nil before the first. The
// caller must not modify it.
func (p *Provider) Current() *tlsv3.Secret { return p.current.Load() }

// Ready is closed once the first secret was installed, an update was
// rejected, or the initial_fetch_timeout passed: Envoy's SdsApi init
// target.
func (p *Provider) Ready() <-chan struct{} { return p.ready }

func (p *Provider) markReady() {
	p.readyOnce.Do(func() {
		if p.timer != nil {
			p.timer.Stop()
		}
		close(p.ready)
	})
}

func (p *Provider) close() {
	if p.timer != nil {
		p.timer.Stop()
	}
	p.sub.Stop()
}

// Follow registers w with every provider of ps and runs init, both under
// the manager's update lock, so that no secret is installed between init
// reading the current secrets and w being told of the next ones. get
// returns the watcher, or nil once it is gone (hold it weakly with
// WeakWatcher so that a context dropped by a config change is collected).
func (m *Manager) Follow(ps []*Provider, get func() Watcher, init func()) {
	m.updateMu.Lock()
	defer m.updateMu.Unlock()
	for _, p := range ps {
		p.mu.Lock()
		live := p.watchers[:0]
		for _, w := range p.watchers {
			if w() != nil {
				live = append(live, w)
			}
		}
		p.watchers = append(live, get)
		p.mu.Unlock()
	}
	init()
}

// WeakWatcher returns a getter for Follow that does not keep w alive.
func WeakWatcher[T any, PT interface {
	*T
	Watcher
}](w PT) func() Watcher {
	wp := weak.Make((*T)(w))
	return func() Watcher {
		if v := wp.Value(); v != nil {
			return PT(v)
		}
		return nil
	}
}

// apply is the subscription's callback. A response without this secret
// (another secret of a shared ADS stream) changes nothing.
func (p *Provider) apply(u xds.Update) error {
	var res *xds.Resource
	for _, r := range u.Resources {
		if r.Name == p.name {
			res = r
		}
	}
	if res == nil {
		return nil
	}
	p.mu.Lock()
	same := res == p.res
	p.mu.Unlock()
	if same {
		return nil
	}
	err := p.applyResource(res)
	// Envoy: a rejected update also ends the init target ("we need to
	// allow server startup to continue, even if we have a bad config").
	p.markReady()
	return err
}

func (p *Provider) applyResource(res *xds.Resource) error {
	sec, ok := res.Message.(*tlsv3.Secret)
	if !ok {
		return fmt.Errorf("secret %q: resource is %T", p.name, res.Message)
	}
	files, dir := dataSourceFiles(sec)
	print := filewatch.Of(files, dir)
	resolved, err := resolve(sec)
	if err != nil {
		return fmt.Errorf("secret %q: %w", p.name, err)
	}
	if err := p.install(resolved); err != nil {
		return fmt.Errorf("secret %q: %w", p.name, err)
	}
	p.mu.Lock()
	p.res, p.files, p.dir, p.print = res, files, dir, print
	p.mu.Unlock()
	return nil
}

// install builds s in every live watcher and, when all built, installs it.
func (p *Provider) install(s *tlsv3.Secret) error {
	p.m.updateMu.Lock()
	defer p.m.updateMu.Unlock()
	p.mu.Lock()
	var ws []Watcher
	live := p.watchers[:0]
	for _, get := range p.watchers {
		if w := get(); w != nil {
			ws = append(ws, w)
			live = append(live, get)
		}
	}
	p.watchers = live
	p.mu.Unlock()
	commits := make([]func(), 0, len(ws))
	for _, w := range ws {
		c, err := w.PrepareSecret(p, s)
		if err != nil {
			return err
		}
		commits = append(commits, c)
	}
	p.current.Store(s)
	for _, c := range commits {
		c()
	}
	return nil
}

// checkFiles re-reads the secret's files when they changed on disk and
// installs the result (Envoy's SdsApi::onWatchUpdate). A rotation that
// does not read or build is counted (key_rotation_failed), logged, and the
// previous secret stays.
func (p *Provider) checkFiles() {
	p.mu.Lock()
	files, dir, prev, res := p.files, p.dir, p.print, p.res
	p.mu.Unlock()
	if res == nil || len(files) == 0 && dir == "" {
		return
	}
	fp := filewatch.Of(files, dir)
	if fp.Equal(prev) {
		return
	}
	p.mu.Lock()
	if p.res == res {
		p.print = fp
	}
	p.mu.Unlock()
	resolved, err := resolve(res.Message.(*tlsv3.Secret))
	if err == nil && proto.Equal(resolved, p.current.Load()) {
		return
	}
	if err == nil {
		err = p.install(resolved)
	}
	if err != nil {
		p.keyRotationFailed.Inc()
		// Envoy: "Failed to reload certificates: ...".
		p.m.opts.Logger.Warn("secret: failed to reload certificates; the previous secret stays", "secret", p.name, "error", err)
		return
	}
	p.m.opts.Logger.Info("secret: certificates reloaded", "secret", p.name)
}

// dataSourceFiles lists the files a secret's certificate material names,
// as Envoy's getDataSourceFilenames, and its watched_directory.
func dataSourceFiles(s *tlsv3.Secret) (files []string, dir string) {
	add := func(ds *corev3.DataSource) {
		if f := ds.GetFilename(); f != "" {
			files = append(files, f)
		}
	}
	if tc := s.GetTlsCertificate(); tc != nil {
		add(tc.GetCertificateChain())
		add(tc.GetPrivateKey())
		dir = tc.GetWatchedDirectory().GetPath()
	}
	if vc := s.GetValidationContext(); vc != nil {
		add(vc.GetTrustedCa())
		add(vc.GetCrl())
		dir = vc.GetWatchedDirectory().GetPath()
	}
	return files, dir
}

// resolve returns a copy of s with its certificate files read into
// inline_bytes and watched_directory cleared (Envoy's resolveSecret).
func resolve(s *tlsv3.Secret) (*tlsv3.Secret, error) {
	out := proto.Clone(s).(*tlsv3.Secret)
	var err error
	read := func(ds *corev3.DataSource, field string) {
		f := ds.GetFilename()
		if f == "" || err != nil {
			return
		}
		b, rerr := os.ReadFile(f)
		if rerr != nil {
			err = fmt.Errorf("%s: cannot read %q: %w", field, f, unwrapPathError(rerr))
			return
		}
		ds.Specifier = &corev3.DataSource_InlineBytes{InlineBytes: b}
	}
	if tc := out.GetTlsCertificate(); tc != nil {
		read(tc.GetCertificateChain(), "tls_certificate.certificate_chain")
		read(tc.GetPrivateKey(), "tls_certificate.private_key")
		tc.WatchedDirectory = nil
	}
	if vc := out.GetValidationContext(); vc != nil {
		read(vc.GetTrustedCa(), "validation_context.trusted_ca")
		read(vc.GetCrl(), "validation_context.crl")
		vc.WatchedDirectory = nil
	}
	return out, err
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
