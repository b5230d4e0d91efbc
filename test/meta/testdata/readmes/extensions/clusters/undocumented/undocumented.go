// Package undocumented is a fixture extension.
package undocumented
