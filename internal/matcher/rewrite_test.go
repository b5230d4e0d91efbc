package matcher

import (
	"strings"
	"testing"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

func TestCompileRewrite(t *testing.T) {
	tests := []struct {
		name, pattern, sub, in string
		want                   string // result of ReplaceAllString
		wantErr                string
	}{
		{name: "group", pattern: `^/(\w+)/.*$`, sub: `\1`, in: "/svc/x", want: "svc"},
		{name: "global replace", pattern: `a`, sub: `b`, in: "banana", want: "bbnbnb"},
		{name: "dollar is literal", pattern: `x`, sub: `$1$`, in: "x", want: "$1$"},
		{name: "escaped backslash", pattern: `x`, sub: `\\`, in: "x", want: `\`},
		{name: "whole match", pattern: `o+`, sub: `[\0]`, in: "foo", want: "f[oo]"},
		{name: "bad regex", pattern: `(`, wantErr: "invalid regex"},
		{name: "missing group", pattern: `a`, sub: `\1`, wantErr: `\1 but the pattern has 0 groups`},
		{name: "trailing backslash", pattern: `a`, sub: `b\`, wantErr: "trailing backslash"},
		{name: "bad escape", pattern: `a`, sub: `\n`, wantErr: `invalid escape \n`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			re, sub, err := CompileRewrite(&matcherv3.RegexMatchAndSubstitute{
				Pattern:      &matcherv3.RegexMatcher{Regex: tt.pattern},
				Substitution: tt.sub,
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if got := re.ReplaceAllString(tt.in, sub); got != tt.want {
				t.Errorf("ReplaceAllString(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
