package admin

import (
	"bytes"
	"fmt"
	"net"
	nethttp "net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// formatParam is Envoy's Utility::formatParam: an empty value counts as absent.
func formatParam(q url.Values) string { return q.Get("format") }

// has reports whether the query names key, with or without a value
// (Envoy's params.find(key) != params.end()).
func has(q url.Values, key string) bool {
	_, ok := q[key]
	return ok
}

// serveReady is Envoy's ServerInfoHandler::handlerReady: the state name and
// a newline, 200 when LIVE, 503 otherwise.
func (a *Admin) serveReady(w nethttp.ResponseWriter, _ *nethttp.Request) {
	state := a.src.State()
	status := nethttp.StatusServiceUnavailable
	if state == adminv3.ServerInfo_LIVE {
		status = nethttp.StatusOK
	}
	writeText(w, status, state.String()+"\n")
}

// serveServerInfo is Envoy's handlerServerInfo: adminv3.ServerInfo as JSON
// with default-valued fields printed.
func (a *Admin) serveServerInfo(w nethttp.ResponseWriter, _ *nethttp.Request) {
	info := a.src.ServerInfo()
	if info == nil {
		info = &adminv3.ServerInfo{}
	}
	info.State = a.src.State()
	a.writeProto(w, jsonAll, info)
}

// serveMemory is Envoy's handlerMemory with Go's allocator mapped onto
// tcmalloc's numbers: allocated = bytes in live heap objects, heap_size =
// heap bytes obtained from the OS, pageheap_unmapped = heap bytes returned to
// the OS, pageheap_free = idle heap bytes still mapped, total_thread_cache =
// per-P mcache bytes, total_physical_bytes = all runtime memory still mapped.
func (a *Admin) serveMemory(w nethttp.ResponseWriter, _ *nethttp.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	a.writeProto(w, jsonAll, &adminv3.Memory{
		Allocated:          ms.HeapAlloc,
		HeapSize:           ms.HeapSys,
		PageheapUnmapped:   ms.HeapReleased,
		PageheapFree:       ms.HeapIdle - ms.HeapReleased,
		TotalThreadCache:   ms.MCacheInuse,
		TotalPhysicalBytes: ms.Sys - ms.HeapReleased,
	})
}

// serveRuntime is Envoy's handlerRuntime for a server without
// layered_runtime: Envoy then has no layers at all
// (source/server/configuration_impl.cc), so {"layers": [], "entries": {}}.
func (a *Admin) serveRuntime(w nethttp.ResponseWriter, _ *nethttp.Request) {
	a.writeProto(w, jsonAll, &structpb.Struct{Fields: map[string]*structpb.Value{
		"layers":  structpb.NewListValue(&structpb.ListValue{}),
		"entries": structpb.NewStructValue(&structpb.Struct{}),
	}})
}

// CertificatesSource is implemented by a Source that can list its
// certificates for /certs.
type CertificatesSource interface {
	// Certificates returns Envoy's admin.v3.Certificates: the certificate
	// chains and trusted CAs in use, each with its path, serial number,
	// subject alternative names and validity.
	Certificates() *adminv3.Certificates
}

// serveCerts is Envoy's handlerCerts. A Source without CertificatesSource
// reports none.
func (a *Admin) serveCerts(w nethttp.ResponseWriter, _ *nethttp.Request) {
	certs := &adminv3.Certificates{}
	if cs, ok := a.src.(CertificatesSource); ok {
		certs = cs.Certificates()
	}
	a.writeProto(w, jsonAll, certs)
}

// serveQuit is Envoy's handlerQuitQuitQuit: "OK\n" is flushed before the
// shutdown starts so the caller always gets its answer.
func (a *Admin) serveQuit(w nethttp.ResponseWriter, _ *nethttp.Request) {
	writeText(w, nethttp.StatusOK, "OK\n")
	if f, ok := w.(nethttp.Flusher); ok {
		f.Flush()
	}
	a.src.Quit()
}

func (a *Admin) serveHealthcheckFail(w nethttp.ResponseWriter, _ *nethttp.Request) {
	a.src.SetHealthcheckFailed(true)
	writeText(w, nethttp.StatusOK, "OK\n")
}

func (a *Admin) serveHealthcheckOK(w nethttp.ResponseWriter, _ *nethttp.Request) {
	a.src.SetHealthcheckFailed(false)
	writeText(w, nethttp.StatusOK, "OK\n")
}

// serveDrainListeners is Envoy's handlerDrainListeners; the flags are set by
// their presence in the query.
func (a *Admin) serveDrainListeners(w nethttp.ResponseWriter, r *nethttp.Request) {
	q := r.URL.Query()
	err := a.src.DrainListeners(DrainOptions{
		Graceful:    has(q, "graceful"),
		InboundOnly: has(q, "inboundonly"),
		SkipExit:    has(q, "skip_exit"),
	})
	if err != nil {
		writeText(w, nethttp.StatusBadRequest, err.Error()+"\n")
		return
	}
	writeText(w, nethttp.StatusOK, "OK\n")
}

func (a *Admin) serveReopenLogs(w nethttp.ResponseWriter, _ *nethttp.Request) {
	a.src.ReopenLogs()
	writeText(w, nethttp.StatusOK, "OK\n")
}

// serveLogging is Envoy's LogsHandler::handlerLogging: with no query it only
// lists the loggers; with exactly one of ?level=, ?paths= or ?<logger>= it
// changes levels first. Every name and level is checked before anything
// changes.
func (a *Admin) serveLogging(w nethttp.ResponseWriter, r *nethttp.Request) {
	var b strings.Builder
	status := nethttp.StatusOK
	if q := r.URL.Query(); len(q) > 0 {
		if err := a.changeLogLevels(q); err != nil {
			if _, internal := err.(internalError); internal {
				writeText(w, nethttp.StatusInternalServerError, err.Error()+"\n")
				return
			}
			status = nethttp.StatusBadRequest
			fmt.Fprintf(&b, "error: %s\n\n", err)
			b.WriteString("usage: /logging?<name>=<level> (change single level)\n")
			b.WriteString("usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n")
			b.WriteString("usage: /logging?level=<level> (change all levels)\n")
			b.WriteString("levels: ")
			for _, l := range logLevels {
				b.WriteString(l + " ")
			}
			b.WriteString("\n")
		}
	}
	levels := a.src.LogLevels()
	names := make([]string, 0, len(levels))
	for n := range levels {
		names = append(names, n)
	}
	slices.Sort(names)
	b.WriteString("active loggers:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %s: %s\n", n, levels[n])
	}
	b.WriteString("\n")
	writeText(w, status, b.String())
}

// internalError marks a Source failure, as opposed to a bad request.
type internalError struct{ error }

// logError is a request error with Envoy's message text.
type logError string

func (e logError) Error() string { return string(e) }

// changeLogLevels is Envoy's LogsHandler::changeLogLevel.
func (a *Admin) changeLogLevels(q url.Values) error {
	if len(q) != 1 {
		return logError("invalid number of parameters")
	}
	key := firstKey(q)
	value := q.Get(key)
	if key == "level" {
		if !slices.Contains(logLevels, value) {
			return logError("unknown logger level")
		}
		if err := a.src.SetLogLevel("", value); err != nil {
			return internalError{fmt.Errorf("admin: set log level: %w", err)}
		}
		return nil
	}

	type change struct{ name, level string }
	var changes []change
	if key == "paths" {
		for _, pair := range strings.Split(value, ",") {
			if strings.TrimSpace(pair) == "" {
				continue // absl::SkipWhitespace
			}
			name, level, _ := strings.Cut(pair, ":")
			if strings.TrimSpace(name) == "" || strings.TrimSpace(level) == "" {
				return logError("empty logger name or empty logger level")
			}
			if !slices.Contains(logLevels, level) {
				return logError("unknown logger level")
			}
			changes = append(changes, change{name, level})
		}
	} else {
		if !slices.Contains(logLevels, value) {
			return logError("unknown logger level")
		}
		changes = append(changes, change{key, value})
	}
	known := a.src.LogLevels()
	for _, c := range changes {
		if _, ok := known[c.name]; !ok {
			return logError("unknown logger name")
		}
	}
	for _, c := range changes {
		if err := a.src.SetLogLevel(c.name, c.level); err != nil {
			return internalError{fmt.Errorf("admin: set log level of %s: %w", c.name, err)}
		}
	}
	return nil
}

func firstKey(q url.Values) string {
	for k := range q {
		return k
	}
	return ""
}

// serveListeners is Envoy's handlerListenerInfo: "name::address" lines, or
// adminv3.Listeners as JSON with ?format=json.
func (a *Admin) serveListeners(w nethttp.ResponseWriter, r *nethttp.Request) {
	ls := a.src.Listeners()
	if formatParam(r.URL.Query()) == "json" {
		out := &adminv3.Listeners{}
		for _, l := range ls {
			st := &adminv3.ListenerStatus{Name: l.Name}
			for i, addr := range l.Addrs {
				if i == 0 {
					st.LocalAddress = protoAddress(addr)
				} else {
					st.AdditionalLocalAddresses = append(st.AdditionalLocalAddresses, protoAddress(addr))
				}
			}
			out.ListenerStatuses = append(out.ListenerStatuses, st)
		}
		a.writeProto(w, jsonPretty, out)
		return
	}
	var b strings.Builder
	for _, l := range ls {
		for _, addr := range l.Addrs {
			fmt.Fprintf(&b, "%s::%s\n", l.Name, addrString(addr))
		}
	}
	writeText(w, nethttp.StatusOK, b.String())
}

// addrString is Envoy's Address::asString: "1.2.3.4:80", "[::1]:80", or the
// pipe path.
func addrString(addr net.Addr) string {
	if u, ok := addr.(*net.UnixAddr); ok {
		return u.Name
	}
	return addr.String()
}

// protoAddress is Envoy's Network::Utility::addressToProtobufAddress.
func protoAddress(addr net.Addr) *corev3.Address {
	sock := func(ip net.IP, zone string, port int, proto corev3.SocketAddress_Protocol) *corev3.Address {
		host := ip.String()
		if zone != "" {
			host += "%" + zone
		}
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Protocol:      proto,
			Address:       host,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
		}}}
	}
	switch a := addr.(type) {
	case *net.TCPAddr:
		return sock(a.IP, a.Zone, a.Port, corev3.SocketAddress_TCP)
	case *net.UDPAddr:
		return sock(a.IP, a.Zone, a.Port, corev3.SocketAddress_UDP)
	case *net.UnixAddr:
		return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: a.Name}}}
	default:
		// Unknown net.Addr implementations keep their text form.
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: addr.String()}}}
	}
}

// serveClusters is Envoy's handlerClusters; the rendering is the Source's.
func (a *Admin) serveClusters(w nethttp.ResponseWriter, r *nethttp.Request) {
	asJSON := formatParam(r.URL.Query()) == "json"
	var buf bytes.Buffer
	if err := a.src.WriteClusters(&buf, asJSON); err != nil {
		a.log.Error("admin: clusters", "error", err)
		writeText(w, nethttp.StatusInternalServerError, "admin: clusters: "+err.Error()+"\n")
		return
	}
	ct := contentTypeText
	if asJSON {
		ct = contentTypeJSON
	}
	writeBody(w, nethttp.StatusOK, ct, buf.Bytes())
}
