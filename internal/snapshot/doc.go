// Package snapshot turns a validated bootstrap into runtime objects: built
// listener configs with their filter chains (every network filter's Build
// runs here, and through the connection manager every HTTP filter's and
// route table's). The result is immutable and holds no proto types on the
// request path. Build does no I/O on sockets and starts no goroutines.
//
// It must not import extensions/ (extensions register themselves) nor net/http.
package snapshot
