package network

import "sync"

// CopyBufferSize is the size of the buffers bodies and TCP streams are
// copied through (request and response bodies, tcp_proxy): big enough for
// few system calls on bulk transfers, small enough to bound memory per
// stream.
const CopyBufferSize = 32 << 10

// One pool for every copy loop, so a buffer freed by a response pump
// serves the next request body or tunnel.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, CopyBufferSize); return &b }}

// GetCopyBuffer takes a CopyBufferSize buffer from the shared pool; give it
// back with PutCopyBuffer.
func GetCopyBuffer() *[]byte { return copyBufPool.Get().(*[]byte) }

// PutCopyBuffer returns a buffer taken with GetCopyBuffer.
func PutCopyBuffer(b *[]byte) { copyBufPool.Put(b) }
