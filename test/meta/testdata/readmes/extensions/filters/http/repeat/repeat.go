// Package repeat is a fixture extension.
package repeat
