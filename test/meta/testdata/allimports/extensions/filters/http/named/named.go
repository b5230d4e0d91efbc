// Package named is imported with a name.
package named

// X is used by extensions/all.
var X int
