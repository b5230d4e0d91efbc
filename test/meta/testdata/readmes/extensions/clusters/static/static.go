// Package static is a fixture extension.
package static
