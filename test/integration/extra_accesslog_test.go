package integration

import (
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestExtraAccessLogs writes the same four requests through file loggers
// with the default format, text_format_source and json_format, and through
// the stdout logger; the requests end 200, UF (connect failure), UH (no
// healthy host) and NR (no route).
// https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage
func TestExtraAccessLogs(t *testing.T) {
	t.Parallel()
	backend := testutil.NamedBackend(t, "ok")
	dir := t.TempDir()
	defaultLog := filepath.Join(dir, "default.log")
	textLog := filepath.Join(dir, "text.log")
	jsonLog := filepath.Join(dir, "json.log")
	hcmExtra := fmt.Sprintf(`          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                text_format_source:
                  inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_FLAGS%% %%UPSTREAM_CLUSTER%%\n"
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                json_format:
                  path: "%%REQ(:PATH)%%"
                  method: "%%REQ(:METHOD)%%"
                  code: "%%RESPONSE_CODE%%"
                  flags: "%%RESPONSE_FLAGS%%"
                  nested: { agent: "%%REQ(USER-AGENT)%%" }
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                text_format_source:
                  inline_string: "STDOUT-LOG %%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_FLAGS%%\n"
`, defaultLog, textLog, jsonLog)
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { path: "/ok" }
                route: { cluster: ok }
              - match: { path: "/uf" }
                route: { cluster: down }
              - match: { path: "/uh" }
                route: { cluster: empty }`
	empty := `  - name: empty
    type: STATIC
    connect_timeout: 1s
    load_assignment: { cluster_name: empty }
`
	l := extraHCMListener(hcmSpec{name: "l", hcmExtra: hcmExtra, vhosts: vhosts})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("ok", backend), staticCluster("down", testutil.ClosedPort(t)), empty),
		"--file-flush-interval-msec", "50")
	addr := h.ListenerAddr("l")
	c := newClient()
	requests := []struct {
		path     string
		wantCode int
	}{
		{path: "/ok", wantCode: 200},
		{path: "/uf", wantCode: 503},
		{path: "/uh", wantCode: 503},
		{path: "/nr", wantCode: 404},
	}
	for _, r := range requests {
		req, _ := nethttp.NewRequest("GET", "http://"+addr+r.path, nil)
		req.Header.Set("user-agent", "extra-agent/1")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.wantCode {
			t.Fatalf("GET %s = %d, want %d", r.path, resp.StatusCode, r.wantCode)
		}
	}

	t.Run("default format", func(t *testing.T) {
		lines := waitLines(t, defaultLog, len(requests))
		// [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
		// %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
		// %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
		// "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"
		// A log line is written when its stream ends, after the response
		// went out, so lines of consecutive requests may swap: match by path.
		byPath := func(prefix string) string {
			for _, l := range lines {
				if strings.Contains(l, prefix) {
					return l
				}
			}
			t.Fatalf("no line containing %q in:\n%s", prefix, strings.Join(lines, "\n"))
			return ""
		}
		okRE := regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /ok HTTP/1\.1" 200 - 0 2 \d+ \d+ "-" "extra-agent/1" "[0-9a-f-]{36}" "` +
			regexp.QuoteMeta(addr) + `" "` + regexp.QuoteMeta(backend) + `"$`)
		if line := byPath(`"GET /ok `); !okRE.MatchString(line) {
			t.Errorf("line %q\ndoes not match %s", line, okRE)
		}
		for _, want := range []string{`"GET /uf HTTP/1.1" 503 UF `, `"GET /uh HTTP/1.1" 503 UH `, `"GET /nr HTTP/1.1" 404 NR `} {
			byPath(want)
		}
	})

	t.Run("text_format_source", func(t *testing.T) {
		lines := waitLines(t, textLog, len(requests))
		want := []string{
			"/ok 200 - ok",
			"/uf 503 UF down",
			"/uh 503 UH empty",
			"/nr 404 NR -",
		}
		sort.Strings(lines)
		sort.Strings(want)
		if strings.Join(lines, "\n") != strings.Join(want, "\n") {
			t.Errorf("lines:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("json_format", func(t *testing.T) {
		lines := waitLines(t, jsonLog, len(requests))
		wantFlags := map[string]string{"/ok": "", "/uf": "UF", "/uh": "UH", "/nr": "NR"}
		wantCode := map[string]int{}
		for _, r := range requests {
			wantCode[r.path] = r.wantCode
		}
		for _, line := range lines {
			var got struct {
				Path   string `json:"path"`
				Method string `json:"method"`
				// Envoy keeps a typed value for %RESPONSE_CODE%: a number.
				Code   json.Number       `json:"code"`
				Flags  string            `json:"flags"`
				Nested map[string]string `json:"nested"`
			}
			dec := json.NewDecoder(strings.NewReader(line))
			dec.UseNumber()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			code, ok := wantCode[got.Path]
			delete(wantCode, got.Path)
			if !ok || got.Method != "GET" || got.Code.String() != fmt.Sprint(code) || got.Nested["agent"] != "extra-agent/1" {
				t.Errorf("line %q: got %+v", line, got)
			}
			if !strings.Contains(line, `"code":`+fmt.Sprint(code)) {
				t.Errorf("line %q: code is not a JSON number", line)
			}
			if w := wantFlags[got.Path]; w != "" && got.Flags != w {
				t.Errorf("line %q: flags %q, want %q", line, got.Flags, w)
			}
		}
		if len(wantCode) != 0 {
			t.Errorf("no JSON line for %v", wantCode)
		}
	})

	t.Run("stdout", func(t *testing.T) {
		want := []string{"STDOUT-LOG /ok 200 -", "STDOUT-LOG /uf 503 UF", "STDOUT-LOG /uh 503 UH", "STDOUT-LOG /nr 404 NR"}
		testutil.Eventually(t, 10*time.Second, func() error {
			out := h.Output()
			for _, w := range want {
				if !strings.Contains(out, w+"\n") {
					return fmt.Errorf("herald output lacks %q:\n%s", w, out)
				}
			}
			return nil
		})
	})
}
