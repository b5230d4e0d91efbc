package http

import "strings"

// HeaderField is one header line of the codec-neutral stream model. Name is
// always lowercase; pseudo-headers (":method", ":path", ":authority",
// ":scheme", ":status") use their HTTP/2 spelling.
type HeaderField struct {
	Name  string
	Value string
}

// Well-known pseudo-header names.
const (
	Method    = ":method"
	Path      = ":path"
	Authority = ":authority"
	Scheme    = ":scheme"
	Status    = ":status"
	Protocol  = ":protocol"
)

// Headers is an ordered list of header fields: Envoy's HeaderMap. Pseudo-headers
// come first. Lookups are linear scans, which beat a map for the ten-or-so
// headers of a typical request and allocate nothing.
//
// Names passed to the lookup and mutation methods must be lowercase.
type Headers struct {
	Fields []HeaderField
}

// Len returns the number of fields.
func (h *Headers) Len() int { return len(h.Fields) }

// Reset empties h, keeping its capacity for reuse.
func (h *Headers) Reset() { h.Fields = h.Fields[:0] }

// Get returns the first value of name, or "".
func (h *Headers) Get(name string) string {
	for i := range h.Fields {
		if h.Fields[i].Name == name {
			return h.Fields[i].Value
		}
	}
	return ""
}

// Lookup returns the first value of name and whether it is present.
func (h *Headers) Lookup(name string) (string, bool) {
	for i := range h.Fields {
		if h.Fields[i].Name == name {
			return h.Fields[i].Value, true
		}
	}
	return "", false
}

// Has reports whether name is present.
func (h *Headers) Has(name string) bool {
	_, ok := h.Lookup(name)
	return ok
}

// Count returns how many fields are called name.
func (h *Headers) Count(name string) int {
	n := 0
	for i := range h.Fields {
		if h.Fields[i].Name == name {
			n++
		}
	}
	return n
}

// Values appends every value of name to dst and returns it.
func (h *Headers) Values(dst []string, name string) []string {
	for i := range h.Fields {
		if h.Fields[i].Name == name {
			dst = append(dst, h.Fields[i].Value)
		}
	}
	return dst
}

// Add appends a field. A pseudo-header is inserted after the existing
// pseudo-headers so that they stay first.
func (h *Headers) Add(name, value string) {
	if len(name) > 0 && name[0] == ':' {
		i := 0
		for i < len(h.Fields) && len(h.Fields[i].Name) > 0 && h.Fields[i].Name[0] == ':' {
			i++
		}
		h.Fields = append(h.Fields, HeaderField{})
		copy(h.Fields[i+1:], h.Fields[i:])
		h.Fields[i] = HeaderField{Name: name, Value: value}
		return
	}
	h.Fields = append(h.Fields, HeaderField{Name: name, Value: value})
}

// Set replaces every field called name with one field holding value, keeping
// the position of the first one.
func (h *Headers) Set(name, value string) {
	for i := range h.Fields {
		if h.Fields[i].Name == name {
			h.Fields[i].Value = value
			h.delFrom(name, i+1)
			return
		}
	}
	h.Add(name, value)
}

// SetIfAbsent adds name only when it is not present.
func (h *Headers) SetIfAbsent(name, value string) {
	if !h.Has(name) {
		h.Add(name, value)
	}
}

// Del removes every field called name and reports whether any was removed.
func (h *Headers) Del(name string) bool {
	n := len(h.Fields)
	h.delFrom(name, 0)
	return len(h.Fields) != n
}

func (h *Headers) delFrom(name string, start int) {
	j := start
	for i := start; i < len(h.Fields); i++ {
		if h.Fields[i].Name != name {
			h.Fields[j] = h.Fields[i]
			j++
		}
	}
	for k := j; k < len(h.Fields); k++ {
		h.Fields[k] = HeaderField{}
	}
	h.Fields = h.Fields[:j]
}

// DelPrefix removes every field whose name starts with prefix.
func (h *Headers) DelPrefix(prefix string) {
	j := 0
	for i := range h.Fields {
		if !strings.HasPrefix(h.Fields[i].Name, prefix) {
			h.Fields[j] = h.Fields[i]
			j++
		}
	}
	for k := j; k < len(h.Fields); k++ {
		h.Fields[k] = HeaderField{}
	}
	h.Fields = h.Fields[:j]
}

// CopyFrom makes h a copy of o (sharing the strings).
func (h *Headers) CopyFrom(o *Headers) {
	h.Fields = append(h.Fields[:0], o.Fields...)
}

// Clone returns a copy of h.
func (h *Headers) Clone() *Headers {
	c := &Headers{Fields: make([]HeaderField, len(h.Fields))}
	copy(c.Fields, h.Fields)
	return c
}

// Method returns :method.
func (h *Headers) Method() string { return h.Get(Method) }

// Path returns :path (path and query).
func (h *Headers) Path() string { return h.Get(Path) }

// Authority returns :authority.
func (h *Headers) Authority() string { return h.Get(Authority) }

// Scheme returns :scheme.
func (h *Headers) Scheme() string { return h.Get(Scheme) }

// StatusCode returns :status as an integer, or 0 when absent or malformed.
func (h *Headers) StatusCode() int {
	s := h.Get(Status)
	if len(s) != 3 {
		return 0
	}
	n := 0
	for i := 0; i < 3; i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// SetStatus sets :status to code.
func (h *Headers) SetStatus(code int) { h.Set(Status, StatusText3(code)) }

// StatusText3 returns the three-digit decimal form of code without allocating
// for the common codes.
func StatusText3(code int) string {
	if code >= 100 && code <= 599 {
		return statusStrings[code-100]
	}
	if code < 0 || code > 999 {
		return "000"
	}
	return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
}

var statusStrings = func() [500]string {
	var s [500]string
	for i := range s {
		c := i + 100
		s[i] = string([]byte{byte('0' + c/100), byte('0' + c/10%10), byte('0' + c%10)})
	}
	return s
}()
