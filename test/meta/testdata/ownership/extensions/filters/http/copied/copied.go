// Package copied registers fixture.Other but its README was copied from good.
package copied

import otherv1 "example.com/proto/other"

var _ = otherv1.Other{}
