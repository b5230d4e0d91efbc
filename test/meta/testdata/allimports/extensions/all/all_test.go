package all

// Imports of test files do not count.
import _ "example.com/fixture/internal/thing"
