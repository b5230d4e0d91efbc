package server

import (
	"context"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/admin"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/secret"
)

// Secrets (https://www.envoyproxy.io/docs/envoy/latest/configuration/security/secret):
// the server's secret manager holds static_resources.secrets and the SDS
// providers TLS contexts subscribe through the xDS client (a file, a gRPC
// stream, ADS). Listener warming waits for the secrets of new listeners
// (waitSecrets, next to the RDS wait), as Envoy's init manager waits for
// SdsApi init targets.

// newSecrets creates the secret manager on the xDS client and installs the
// bootstrap's static secrets.
func (s *Server) newSecrets(ctx context.Context, cfg *bootstrap.Config) error {
	s.secrets = secret.NewManager(ctx, secret.Options{Client: s.dyn.client, Stats: s.store, Logger: s.log})
	return s.setStaticSecrets(cfg)
}

// staticSecretsPath is where static secrets sit in the bootstrap.
const staticSecretsPath = "static_resources.secrets"

// setStaticSecrets checks and installs cfg's static_resources.secrets.
// Errors are positioned in the file; on error nothing changes.
func (s *Server) setStaticSecrets(cfg *bootstrap.Config) error {
	ss := cfg.Bootstrap.GetStaticResources().GetSecrets()
	if errs := secret.CheckStatic(ss, staticSecretsPath); len(errs) > 0 {
		return configerr.Collect(errs, "", cfg.Index)
	}
	s.secrets.SetStatic(ss)
	return nil
}

// staticSecretsWarning is the reload warning when static secrets changed:
// a TLS context reads a static secret when it is built, and a reload
// rebuilds only the listeners and clusters whose own config changed.
const staticSecretsWarning = "static_resources.secrets changed: only listeners and clusters rebuilt by this reload use the new values; " +
	"use SDS (sds_config) for certificates that rotate"

// swapStaticSecrets installs cfg's static secrets for a reload and returns
// the function that puts the previous ones back if the reload is rejected,
// and whether they differ from the running ones.
func (s *Server) swapStaticSecrets(cfg *bootstrap.Config) (restore func(), changed bool, err error) {
	if s.secrets == nil {
		return func() {}, false, nil
	}
	old := s.secrets.Statics()
	next := cfg.Bootstrap.GetStaticResources().GetSecrets()
	changed = len(old) != len(next)
	for i := 0; !changed && i < len(old); i++ {
		changed = !proto.Equal(old[i], next[i])
	}
	if err := s.setStaticSecrets(cfg); err != nil {
		return nil, false, err
	}
	return func() { s.secrets.SetStatic(old) }, changed, nil
}

// waitSecrets waits until every SDS secret had its first version (or a
// rejection, or its initial_fetch_timeout), or ctx ends.
func (s *Server) waitSecrets(ctx context.Context) {
	if s.secrets != nil {
		s.secrets.WaitReady(ctx)
	}
}

// closeSecrets stops the SDS subscriptions and the file watcher.
func (s *Server) closeSecrets() {
	if s.secrets != nil {
		s.secrets.Close()
	}
}

// secretsDump is /config_dump's SecretsConfigDump.
func (s *Server) secretsDump() (*adminv3.SecretsConfigDump, error) {
	if s.secrets == nil {
		return &adminv3.SecretsConfigDump{}, nil
	}
	return s.secrets.ConfigDump()
}

// Certificates implements admin's /certs: the certificates and trusted CAs
// of the static and SDS secrets.
func (s *Server) Certificates() *adminv3.Certificates {
	if s.secrets == nil {
		return &adminv3.Certificates{}
	}
	return s.secrets.Certificates(time.Now())
}

var _ admin.CertificatesSource = (*Server)(nil)
