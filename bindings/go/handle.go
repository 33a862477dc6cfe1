package fencekit

import (
	"runtime"
	"sync"
)

// handle owns a pointer P to a library object. Every call holds it for reading, and freeing
// takes it for writing, so an object is never freed under a running call: Close is safe
// while other goroutines call, and they get ErrClosed afterwards. (P is the pointer type:
// cgo's opaque structs cannot be type arguments themselves.) A call's read hold also keeps
// the owner reachable, as runtime.KeepAlive would, so its cleanup cannot run mid-call.
type handle[P comparable] struct {
	mu      sync.RWMutex
	ptr     P
	cleanup runtime.Cleanup
}

// own makes h the owner of ptr, with free as a safety net that runs if owner becomes
// unreachable without being closed.
func own[O any, P comparable](owner *O, h *handle[P], ptr P, free func(P)) {
	h.ptr = ptr
	h.cleanup = runtime.AddCleanup(owner, free, ptr)
}

// acquire returns the live pointer, held for reading until release; or ErrClosed.
func (h *handle[P]) acquire() (P, error) {
	h.mu.RLock()
	var none P
	if h.ptr == none {
		h.mu.RUnlock()
		return none, ErrClosed
	}
	return h.ptr, nil
}

func (h *handle[P]) release() { h.mu.RUnlock() }

// with runs body with the live pointer, or returns ErrClosed.
func (h *handle[P]) with(body func(P) error) error {
	ptr, err := h.acquire()
	if err != nil {
		return err
	}
	defer h.release()
	return body(ptr)
}

// free frees the object once no call holds it; freeing twice does nothing.
func (h *handle[P]) free(free func(P)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var none P
	if h.ptr == none {
		return
	}
	h.cleanup.Stop()
	free(h.ptr)
	h.ptr = none
}
