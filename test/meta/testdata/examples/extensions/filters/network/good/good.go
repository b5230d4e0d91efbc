// Package good is a fixture extension.
package good
