// Package good registers fixture.Good and fixture.GoodPerRoute.
package good

import goodv1 "example.com/proto/good"

var _ = goodv1.Good{}
