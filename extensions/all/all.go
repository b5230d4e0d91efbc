// Package all links every herald extension into the binary: one blank
// import per extension folder (a test checks the list against the tree).
package all

import (
	_ "github.com/herald-proxy/herald/extensions/access_loggers/file"
	_ "github.com/herald-proxy/herald/extensions/access_loggers/stream"
	_ "github.com/herald-proxy/herald/extensions/clusters/eds"
	_ "github.com/herald-proxy/herald/extensions/clusters/logical_dns"
	_ "github.com/herald-proxy/herald/extensions/clusters/static"
	_ "github.com/herald-proxy/herald/extensions/clusters/strict_dns"
	_ "github.com/herald-proxy/herald/extensions/filters/http/cors"
	_ "github.com/herald-proxy/herald/extensions/filters/http/fault"
	_ "github.com/herald-proxy/herald/extensions/filters/http/header_mutation"
	_ "github.com/herald-proxy/herald/extensions/filters/http/health_check"
	_ "github.com/herald-proxy/herald/extensions/filters/http/jwt_authn"
	_ "github.com/herald-proxy/herald/extensions/filters/http/local_ratelimit"
	_ "github.com/herald-proxy/herald/extensions/filters/http/rbac"
	_ "github.com/herald-proxy/herald/extensions/filters/http/router"
	_ "github.com/herald-proxy/herald/extensions/filters/listener/http_inspector"
	_ "github.com/herald-proxy/herald/extensions/filters/listener/proxy_protocol"
	_ "github.com/herald-proxy/herald/extensions/filters/listener/tls_inspector"
	_ "github.com/herald-proxy/herald/extensions/filters/network/http_connection_manager"
	_ "github.com/herald-proxy/herald/extensions/filters/network/tcp_proxy"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/least_request"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/maglev"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/random"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/ring_hash"
	_ "github.com/herald-proxy/herald/extensions/load_balancing_policies/round_robin"
	_ "github.com/herald-proxy/herald/extensions/transport_sockets/tls"
)
