// Package unknown is a fixture extension.
package unknown
