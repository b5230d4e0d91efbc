// Package testdata is ignored, as the go tool ignores it.
package testdata
