// Package unknown lists a URL that names no message.
package unknown
