// Package noexample is a fixture extension.
package noexample
