// Package unregistered is a fixture extension.
package unregistered
