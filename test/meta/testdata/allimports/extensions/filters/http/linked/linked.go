// Package linked is linked by extensions/all.
package linked
