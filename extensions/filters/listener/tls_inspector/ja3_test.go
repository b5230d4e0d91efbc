package tlsinspector

import (
	"crypto/md5"
	"encoding/hex"
	"testing"
)

// helloBody builds a ClientHello body (after the handshake header) with
// the given fields; groups and formats are left out when nil.
func helloBody(version int, ciphers []int, exts []int, groups []int, formats []int) []byte {
	u16 := func(b []byte, v int) []byte { return append(b, byte(v>>8), byte(v)) }
	b := u16(nil, version)
	b = append(b, make([]byte, 32)...) // random
	b = append(b, 0)                   // session id
	b = u16(b, 2*len(ciphers))
	for _, c := range ciphers {
		b = u16(b, c)
	}
	b = append(b, 1, 0) // compression: null
	var e []byte
	for _, typ := range exts {
		var data []byte
		switch typ {
		case extSupportedGroups:
			data = u16(nil, 2*len(groups))
			for _, g := range groups {
				data = u16(data, g)
			}
		case extECPointFormats:
			data = []byte{byte(len(formats))}
			for _, f := range formats {
				data = append(data, byte(f))
			}
		}
		e = u16(e, typ)
		e = u16(e, len(data))
		e = append(e, data...)
	}
	b = u16(b, len(e))
	return append(b, e...)
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestJA3(t *testing.T) {
	tests := []struct {
		name string
		body []byte
		want string // the JA3 string whose MD5 is expected
	}{
		{
			// The example of the JA3 reference (salesforce/ja3 README):
			// its MD5 is ada70206e40642a3e4461f35503241d5.
			name: "reference example",
			body: helloBody(769, []int{47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4},
				[]int{0, 10, 11}, []int{23, 24, 25}, []int{0}),
			want: "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0",
		},
		{
			// GREASE is dropped from ciphers and extensions; Envoy keeps it
			// in the groups.
			name: "grease",
			body: helloBody(771, []int{0x2a2a, 4865, 4866}, []int{0xdada, 0, 10, 11, 43}, []int{0x3a3a, 29, 23}, []int{0}),
			want: "771,4865-4866,0-10-11-43,14906-29-23,0",
		},
		{
			name: "no extensions",
			body: helloBody(771, []int{4865}, nil, nil, nil),
			want: "771,4865,,,",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ja3(tc.body)
			if !ok {
				t.Fatal("ja3: malformed")
			}
			if want := md5hex(tc.want); got != want {
				t.Errorf("ja3 = %s, want md5(%q) = %s", got, tc.want, want)
			}
		})
	}
	if got, _ := ja3(helloBody(769, []int{47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4}, []int{0, 10, 11}, []int{23, 24, 25}, []int{0})); got != "ada70206e40642a3e4461f35503241d5" {
		t.Errorf("reference JA3 = %s, want ada70206e40642a3e4461f35503241d5", got)
	}
	if _, ok := ja3([]byte{3, 3, 0}); ok {
		t.Error("truncated body: ok, want malformed")
	}
}
