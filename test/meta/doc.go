// Package meta holds the project's meta tests: checks over the source tree
// rather than over behaviour. Every extension folder is linked by
// extensions/all and has a README; the READMEs of a kind list exactly the
// type URLs its registry holds, each in the folder that imports the URL's
// proto package; every README YAML example is a complete bootstrap that
// validates; and net/http is imported only where STYLE.md allows it
// (CoreDNS's presubmit and README tests are the model).
//
// Each check is a function over an fs.FS rooted at a repository, so the tests
// run it on the real tree and on a deliberately broken fixture under
// testdata/ that it must reject (STYLE.md §7: "Each meta test gets a
// deliberately broken fixture proving it can fail").
//
// The checks themselves import nothing of herald's; the test wires in the
// registries (by blank-importing extensions/all) and the validator
// (internal/server in validate mode).
package meta
