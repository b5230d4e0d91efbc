// Command backend is the seeds' example backend (backend.py) in Go: it
// answers "Hello from backend!" on 127.0.0.1:9090, or on the addresses
// given as arguments, each answering with its own name.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
)

func main() {
	flag.Usage = func() {
		fmt.Println("usage: backend [name=host:port ...]   (default: Hello from backend! on 127.0.0.1:9090)")
	}
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		log.Println("Starting backend server on port 9090...")
		log.Fatal(http.ListenAndServe("127.0.0.1:9090", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-type", "text/plain")
			io.WriteString(w, "Hello from backend!")
		})))
	}
	errs := make(chan error)
	for _, a := range args {
		name, addr, ok := strings.Cut(a, "=")
		if !ok {
			log.Fatalf("argument %q: want name=host:port", a)
		}
		go func() {
			log.Printf("backend %s on %s", name, addr)
			errs <- http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "Hello from %s (%s)\n", name, r.URL.Path)
			}))
		}()
	}
	log.Fatal(<-errs)
}
