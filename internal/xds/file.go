package xds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/filewatch"
)

// fileSource is a filesystem subscription: path (legacy) or
// path_config_source. The file holds a DiscoveryResponse in YAML, JSON,
// binary or text proto (chosen by extension, as Envoy's loadFromFile).
//
// Envoy watches with inotify for a move onto the path, or any move inside
// watched_directory. herald polls instead (no inotify dependency): every
// interval it compares the path's identity (inode via os.SameFile), size
// and mtime — and with watched_directory, the identity and mtime of every
// entry of the directory, so a Kubernetes ConfigMap's ..data symlink swap is
// seen. With poll_interval the file is read every interval, as Envoy does.
// An update is delivered only when the bytes changed.
type fileSource struct {
	path     string
	dir      string // watched_directory; "" if none
	interval time.Duration
	always   bool // poll_interval: read every tick
	log      *slog.Logger

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	// Owned by the polling goroutine:
	w     *watch
	last  []byte
	cache map[string]*Resource
	print filewatch.Fingerprint
}

var _ source = (*fileSource)(nil)

func newFileSource(pcs *corev3.PathConfigSource, opts Options, log *slog.Logger) (*fileSource, error) {
	fs := &fileSource{path: pcs.GetPath(), interval: opts.FilePollInterval, log: log, cache: map[string]*Resource{}}
	if fs.path == "" {
		return nil, errors.New("path: must not be empty")
	}
	// Envoy: "paths must refer to an existing path in the system".
	if _, err := os.Stat(fs.path); err != nil {
		return nil, fmt.Errorf("paths must refer to an existing path in the system: '%s' does not exist", fs.path)
	}
	if wd := pcs.GetWatchedDirectory(); wd != nil {
		if pcs.GetPollInterval() != nil {
			return nil, errors.New("watched_directory: cannot be used together with poll_interval")
		}
		fs.dir = wd.GetPath()
		if st, err := os.Stat(fs.dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("watched_directory.path: '%s' is not an existing directory", fs.dir)
		}
	}
	if pi := pcs.GetPollInterval(); pi != nil {
		fs.interval, fs.always = pi.AsDuration(), true
	}
	return fs, nil
}

// attach implements source: it loads the file now and then watches it.
func (fs *fileSource) attach(ctx context.Context, w *watch) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.cancel != nil {
		return
	}
	fs.w = w
	ctx, fs.cancel = context.WithCancel(ctx)
	fs.done = make(chan struct{})
	go fs.run(ctx)
}

// detach implements source.
func (fs *fileSource) detach(*watch) {
	fs.mu.Lock()
	cancel, done := fs.cancel, fs.done
	fs.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// interestChanged implements source: the file is offered again with the
// new names.
func (fs *fileSource) interestChanged(*watch) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.last = nil // deliver again on the next tick
	fs.print = filewatch.Fingerprint{}
}

func (fs *fileSource) run(ctx context.Context) {
	defer close(fs.done)
	fs.print = fs.fingerprint()
	fs.load()
	t := time.NewTicker(fs.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fs.mu.Lock()
		prev := fs.print
		fs.mu.Unlock()
		p := fs.fingerprint()
		if !fs.always && p.Equal(prev) {
			continue
		}
		fs.mu.Lock()
		fs.print = p
		fs.mu.Unlock()
		fs.load()
	}
}

// load reads, parses, validates and delivers the file; a bad file is
// rejected (update_rejected, logged) and the previous resources stay.
func (fs *fileSource) load() {
	w := fs.w
	data, err := os.ReadFile(fs.path)
	if err != nil {
		// Envoy: a read failure is an update_failure, not a rejection.
		w.connectionFailed()
		fs.log.Warn("xds: cannot read config file", "path", fs.path, "error", err)
		return
	}
	fs.mu.Lock()
	same := fs.last != nil && bytes.Equal(data, fs.last)
	fs.mu.Unlock()
	if same {
		return
	}
	resp := &discoveryv3.DiscoveryResponse{}
	if _, err := bootstrap.Unmarshal(fs.path, data, resp); err != nil {
		w.rejectUndelivered(resp.GetVersionInfo(), fmt.Errorf("%s", joinErrors(err)))
		fs.remember(data)
		return
	}
	ds, err := decodeAll(w.typeURL, resp.GetResources())
	if err != nil {
		w.rejectUndelivered(resp.GetVersionInfo(), fmt.Errorf("%s: %w", fs.path, err))
		fs.remember(data)
		return
	}
	next := mergeDecoded(map[string]*Resource{}, fs.cache, ds, resp.GetVersionInfo(), time.Now())
	if err := w.deliver(resp.GetVersionInfo(), next); err == nil {
		fs.cache = next
	}
	fs.remember(data)
}

func (fs *fileSource) remember(data []byte) {
	fs.mu.Lock()
	fs.last = data
	fs.mu.Unlock()
}

// fingerprint identifies the watched file and directory entries.
func (fs *fileSource) fingerprint() filewatch.Fingerprint {
	return filewatch.Of([]string{fs.path}, fs.dir)
}
