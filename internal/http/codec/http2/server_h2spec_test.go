package http2

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/summerwind/h2spec/config"
	"github.com/summerwind/h2spec/generic"
	h2spechpack "github.com/summerwind/h2spec/hpack"
	h2spechttp2 "github.com/summerwind/h2spec/http2"
	"github.com/summerwind/h2spec/spec"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// h2specSkip lists the h2spec cases herald answers differently on purpose,
// by case ID, with the reason. Keep doc.go's list in step.
var h2specSkip = map[string]string{}

// h2specHandler reads the request body and answers 200 with a body, so that
// the flow-control cases see DATA frames.
func h2specHandler(s hhttp.ServerStream) {
	buf := make([]byte, 4096)
	for {
		if _, err := s.ReadBody(buf); err != nil {
			if err != io.EOF {
				return
			}
			break
		}
	}
	h := &hhttp.Headers{}
	h.SetStatus(200)
	h.Add("content-type", "text/plain")
	if err := s.WriteHeaders(h, false); err != nil {
		return
	}
	_ = s.WriteData([]byte("hello from herald\n"), true)
}

// TestH2Spec runs the h2spec conformance suite (generic, http2, hpack)
// against the server on loopback, one connection per case.
func TestH2Spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec suite skipped in -short mode")
	}
	ts := startServer(t, hhttp.ServerOptions{}, streamFunc(h2specHandler), nil)
	host, port, err := net.SplitHostPort(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	portN, _ := strconv.Atoi(port)
	cfg := &config.Config{
		Host:         host,
		Port:         portN,
		Path:         "/",
		Timeout:      time.Second,
		MaxHeaderLen: 4000,
		Strict:       true, // the RFC's SHOULDs too
	}
	groups := []*spec.TestGroup{generic.Spec(), h2spechttp2.Spec(), h2spechpack.Spec()}

	// h2spec prints its progress on stdout; keep it for -v runs only.
	stdout := os.Stdout
	if !testing.Verbose() {
		devnull, err := os.Open(os.DevNull)
		if err == nil {
			os.Stdout = devnull
			defer func() { os.Stdout = stdout; devnull.Close() }()
		}
	}
	var cases []*spec.TestCase
	for _, g := range groups {
		collectCases(g, &cases)
	}
	for _, tc := range cases {
		id := caseID(tc)
		if reason, ok := h2specSkip[id]; ok {
			tc.Run = func(*config.Config, *spec.Conn) error { return spec.ErrSkipped }
			t.Logf("h2spec %s skipped: %s", id, reason)
		}
	}
	for _, g := range groups {
		g.Test(cfg)
	}
	os.Stdout = stdout

	passed, failed, skipped := 0, 0, 0
	for _, tc := range cases {
		r := tc.Result
		switch {
		case r == nil:
		case r.Skipped:
			skipped++
		case r.Failed:
			failed++
			t.Errorf("h2spec %s %s: %v", caseID(tc), tc.Desc, r.Error)
		default:
			passed++
		}
	}
	t.Logf("h2spec: %d passed, %d failed, %d skipped", passed, failed, skipped)
	if passed == 0 {
		t.Fatalf("h2spec ran no case")
	}
}

func collectCases(g *spec.TestGroup, out *[]*spec.TestCase) {
	*out = append(*out, g.Tests...)
	*out = append(*out, g.StrictTests...)
	for _, sub := range g.Groups {
		collectCases(sub, out)
	}
}

// caseID is h2spec's case ID, e.g. "http2/6.9.1/2".
func caseID(tc *spec.TestCase) string {
	for i, c := range append(tc.Parent.Tests, tc.Parent.StrictTests...) {
		if c == tc {
			return fmt.Sprintf("%s/%d", tc.Parent.ID(), i+1)
		}
	}
	return tc.Parent.ID() + "/?"
}
