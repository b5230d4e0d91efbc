// Package all has no README and needs none.
package all
