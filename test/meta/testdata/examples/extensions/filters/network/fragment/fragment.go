// Package fragment is a fixture extension.
package fragment
