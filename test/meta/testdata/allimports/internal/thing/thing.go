// Package thing is not an extension.
package thing
