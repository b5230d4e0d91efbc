package secret

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
	"github.com/herald-proxy/herald/internal/xds"
)

func generic(name, value string) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{
		Secret: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: value}}}}}
}

func validation(name string) *tlsv3.Secret {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{}}}
}

func TestCheckStatic(t *testing.T) {
	tests := []struct {
		name    string
		secrets []*tlsv3.Secret
		wantErr string
	}{
		{name: "distinct names", secrets: []*tlsv3.Secret{generic("a", "x"), generic("b", "y")}},
		// Envoy keys static secrets by type, so one name may serve two types.
		{name: "same name, different types", secrets: []*tlsv3.Secret{generic("a", "x"), validation("a")}},
		{name: "duplicate", secrets: []*tlsv3.Secret{generic("a", "x"), generic("a", "y")},
			wantErr: "static_resources.secrets[1].name: duplicate static GenericSecret secret name a"},
		{name: "no type", secrets: []*tlsv3.Secret{{Name: "a"}},
			wantErr: `static_resources.secrets[0]: secret "a" has no type`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckStatic(tc.secrets, "static_resources.secrets").Err()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func newManager(t *testing.T, store *stats.Store) *Manager {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	client, err := xds.NewClient(nil, xds.Options{Stats: store, FilePollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ctx, Options{Client: client, Stats: store, PollInterval: 5 * time.Millisecond})
	t.Cleanup(func() {
		cancel()
		m.Close()
		client.Close()
	})
	return m
}

func TestStaticLookup(t *testing.T) {
	m := newManager(t, stats.NewStore())
	m.SetStatic([]*tlsv3.Secret{generic("a", "1")})
	if got := m.Static("a"); got == nil || got.GetGenericSecret().GetSecret().GetInlineString() != "1" {
		t.Fatalf("Static(a) = %v", got)
	}
	if got := m.Static("b"); got != nil {
		t.Fatalf("Static(b) = %v, want nil", got)
	}
	// A reload replaces the set.
	m.SetStatic([]*tlsv3.Secret{generic("b", "2")})
	if m.Static("a") != nil || m.Static("b") == nil {
		t.Fatal("SetStatic did not replace the static secrets")
	}
}

// recorder is a Watcher that refuses secrets whose generic value is "bad".
type recorder struct {
	installed atomic.Pointer[string]
}

func (r *recorder) PrepareSecret(_ *Provider, s *tlsv3.Secret) (func(), error) {
	v := s.GetGenericSecret().GetSecret().GetInlineString()
	if v == "bad" {
		return nil, errors.New("bad value")
	}
	return func() { r.installed.Store(&v) }, nil
}

func (r *recorder) value() string {
	if v := r.installed.Load(); v != nil {
		return *v
	}
	return ""
}

func sdsFile(version, name, value string) string {
	return fmt.Sprintf("version_info: %q\nresources:\n- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n  name: %s\n  generic_secret: { secret: { inline_string: %q } }\n", version, name, value)
}

func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func waitValue(t *testing.T, r *recorder, want string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if got := r.value(); got != want {
			return fmt.Errorf("installed %q, want %q", got, want)
		}
		return nil
	})
}

func TestProviderFromFile(t *testing.T) {
	store := stats.NewStore()
	m := newManager(t, store)
	path := filepath.Join(t.TempDir(), "sds.yaml")
	writeAtomic(t, path, sdsFile("1", "s", "one"))
	src := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{Path: path}}}
	p, err := m.Provider(src, "s")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := m.Provider(src, "s"); again != p {
		t.Error("a second reference to the same source and name made a second provider")
	}
	r := &recorder{}
	// init installs what the provider already holds (the file may have
	// been read before Follow); later secrets reach r as updates.
	m.Follow([]*Provider{p}, WeakWatcher(r), func() {
		if cur := p.Current(); cur != nil {
			if commit, err := r.PrepareSecret(p, cur); err == nil {
				commit()
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.WaitReady(ctx)
	waitValue(t, r, "one")

	writeAtomic(t, path, sdsFile("2", "s", "two"))
	waitValue(t, r, "two")

	// A value the watcher refuses: rejected and counted; "two" stays.
	writeAtomic(t, path, sdsFile("3", "s", "bad"))
	rejected := store.Counter("sds.s.update_rejected")
	testutil.Eventually(t, 5*time.Second, func() error {
		if rejected.Value() != 1 {
			return fmt.Errorf("sds.s.update_rejected = %d, want 1", rejected.Value())
		}
		return nil
	})
	if got := r.value(); got != "two" {
		t.Errorf("after a rejected update the watcher holds %q, want two", got)
	}
	if got := p.Current().GetGenericSecret().GetSecret().GetInlineString(); got != "two" {
		t.Errorf("Current() = %q, want two", got)
	}

	dump, err := m.ConfigDump()
	if err != nil {
		t.Fatal(err)
	}
	if len(dump.GetDynamicActiveSecrets()) != 1 || dump.GetDynamicActiveSecrets()[0].GetVersionInfo() != "2" {
		t.Errorf("dynamic_active_secrets = %v, want s at version 2", dump.GetDynamicActiveSecrets())
	}
}

func TestWatcherCollected(t *testing.T) {
	// A watcher nobody holds (a TLS context of a replaced listener) is
	// dropped instead of being built on every update.
	m := newManager(t, stats.NewStore())
	path := filepath.Join(t.TempDir(), "sds.yaml")
	writeAtomic(t, path, sdsFile("1", "s", "one"))
	src := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: path}}
	p, err := m.Provider(src, "s")
	if err != nil {
		t.Fatal(err)
	}
	m.Follow([]*Provider{p}, WeakWatcher(&recorder{}), func() {})
	testutil.Eventually(t, 5*time.Second, func() error {
		runtime.GC()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, w := range p.watchers {
			if w() != nil {
				return errors.New("the dropped watcher is still alive")
			}
		}
		return nil
	})
}

func TestDumpWarmingAndCerts(t *testing.T) {
	m := newManager(t, stats.NewStore())
	path := filepath.Join(t.TempDir(), "sds.yaml")
	writeAtomic(t, path, sdsFile("1", "other", "x"))
	src := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: path}}
	if _, err := m.Provider(src, "missing"); err != nil {
		t.Fatal(err)
	}
	m.SetStatic([]*tlsv3.Secret{generic("g", "v")})
	dump, err := m.ConfigDump()
	if err != nil {
		t.Fatal(err)
	}
	if len(dump.GetStaticSecrets()) != 1 || dump.GetStaticSecrets()[0].GetName() != "g" {
		t.Errorf("static_secrets = %v", dump.GetStaticSecrets())
	}
	if len(dump.GetDynamicWarmingSecrets()) != 1 || dump.GetDynamicWarmingSecrets()[0].GetName() != "missing" {
		t.Errorf("dynamic_warming_secrets = %v", dump.GetDynamicWarmingSecrets())
	}
	// Generic secrets hold no certificate.
	if got := m.Certificates(time.Now()); len(got.GetCertificates()) != 0 {
		t.Errorf("certificates = %v, want none", got)
	}
}
