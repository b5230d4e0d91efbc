package router

import "syscall"

var errConnRefused = syscall.ECONNREFUSED
