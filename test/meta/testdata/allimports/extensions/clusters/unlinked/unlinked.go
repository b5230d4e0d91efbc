// Package unlinked is missing from extensions/all.
package unlinked
