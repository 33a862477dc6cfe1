//go:build fencekit_shared

package fencekit

// libfencekit.so (build tag fencekit_shared): the program finds it at run time through its
// rpath (go build -ldflags=-r=DIR), LD_LIBRARY_PATH or the dynamic linker's directories. A
// file of its own for the reason link_static.go gives.

// #cgo pkg-config: fencekit
import "C"
