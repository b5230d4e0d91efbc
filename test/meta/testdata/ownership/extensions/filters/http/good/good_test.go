package good

// Test imports do not make a folder own a type URL.
import _ "example.com/proto/other"
