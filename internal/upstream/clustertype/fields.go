package clustertype

import (
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
)

// NotSupported is configerr.NotSupported, kept here for the cluster code.
const NotSupported = configerr.NotSupported

// CheckFields is configerr.CheckFields: every set field of m not in allowed
// is an error naming it.
func CheckFields(m proto.Message, path string, allowed ...string) configerr.List {
	return configerr.CheckFields(m, path, allowed...)
}
