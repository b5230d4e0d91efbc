package matcher

import (
	"fmt"
	"regexp"
	"strings"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// CompileRewrite compiles a type.matcher.v3.RegexMatchAndSubstitute as
// Envoy's Regex::Utility::parseRegex + replaceAll (RE2::GlobalReplace):
// the pattern matches anywhere and every match is replaced; the RE2
// rewrite string (\1 for a group, \\ for a backslash) becomes Go's
// template syntax (${1}, $$) for (*regexp.Regexp).ReplaceAllString.
// RE2 fails the whole replacement at run time on a bad escape or a
// missing group; herald rejects the config instead, so the mistake is
// seen at load.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/type/matcher/v3/regex.proto#type-matcher-v3-regexmatchandsubstitute
func CompileRewrite(rs *matcherv3.RegexMatchAndSubstitute) (*regexp.Regexp, string, error) {
	re, err := regexp.Compile(rs.GetPattern().GetRegex())
	if err != nil {
		return nil, "", fmt.Errorf("invalid regex %q: %v", rs.GetPattern().GetRegex(), err)
	}
	sub, err := re2RewriteToGo(rs.GetSubstitution(), re.NumSubexp())
	if err != nil {
		return nil, "", err
	}
	return re, sub, nil
}

// re2RewriteToGo converts an RE2 rewrite string with groups capture
// groups available to Go's Expand template syntax.
func re2RewriteToGo(s string, groups int) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '$':
			b.WriteString("$$")
		case '\\':
			if i+1 >= len(s) {
				return "", fmt.Errorf("invalid substitution %q: trailing backslash", s)
			}
			i++
			d := s[i]
			switch {
			case d == '\\':
				b.WriteByte('\\')
			case d >= '0' && d <= '9':
				if n := int(d - '0'); n > groups {
					return "", fmt.Errorf("invalid substitution %q: \\%d but the pattern has %d groups", s, n, groups)
				}
				b.WriteString("${")
				b.WriteByte(d)
				b.WriteByte('}')
			default:
				return "", fmt.Errorf("invalid substitution %q: invalid escape \\%c", s, d)
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
