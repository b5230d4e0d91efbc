// Package all is a broken fixture: see meta_test.go for what is wrong.
package all

import (
	_ "example.com/fixture/extensions/filters/http/linked"
	// Named instead of blank.
	named "example.com/fixture/extensions/filters/http/named"
	_ "example.com/fixture/extensions/filters/http/testsonly"
	_ "example.com/fixture/internal/thing"
)

var _ = named.X
