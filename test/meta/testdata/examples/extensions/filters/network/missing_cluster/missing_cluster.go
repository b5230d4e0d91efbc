// Package missingcluster is a fixture extension.
package missingcluster
