//go:build !fencekit_shared

package fencekit

// libfencekit.a, with the system libraries a Rust static library needs: a program built so
// needs nothing of fencekit installed at run time.
//
// The directive lives in a file of its own, not behind a tag in a shared preamble: the go
// command's build cache keys a cgo package by its files, not by the tags that select its
// #cgo lines, and would hand a static build the shared build's package (golang/go#73033).

// #cgo pkg-config: fencekit-static
import "C"
