// Package fencekit is the Go binding of libfencekit, the split-brain prevention kernel.
//
// A storage checks the fencing token of every write with a Fence; a write may land only when
// the verdict is accepted. A Node is a member of a Raft group that hands its leader a lease
// and the token to write with.
//
// The package links an installed libfencekit through pkg-config (README.md, "Install"):
// statically by default (the fencekit-static package: a program needs nothing installed at
// run time), or the shared library with the build tag fencekit_shared (the fencekit
// package); link_static.go and link_shared.go say which. Install it with
// make -C ffi install PREFIX=... from a fencekit checkout and put PREFIX/lib/pkgconfig on
// PKG_CONFIG_PATH.
//
// Calls that wait take a context.Context first. When it ends first, the call returns ctx.Err()
// at once (wrapped together with ErrTimeout when the library's own wait ran out at the
// context's deadline); what it started may still complete (a proposal may still commit).
package fencekit

/*
#include <fencekit.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"
)

// Status is a status code of the C ABI (ffi/README.md).
type Status uint32

// Name is the status code's name, such as "FK_STATUS_INVALID_TOKEN".
func (s Status) Name() string { return C.GoString(C.fk_status_name(C.fk_status(s))) }

// Error is a failed call: its status code and the library's message.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "fencekit: " + e.Status.Name()
	}
	return "fencekit: " + e.Message
}

// Is lets errors.Is match an error against the sentinel of its status (ErrInvalidToken...).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Status == e.Status
}

// The sentinel errors, one per status code of the C ABI (FK_STATUS_* but OK; a test checks
// the list against ffi/include/fencekit.h); compare with errors.Is. ErrNodeFailed: the node
// failed (a panic on its thread, a log it could not write; the message says why), reports no
// leadership and refuses everything until restarted. ErrTLS: TLS files that cannot be used
// (unreadable, a key readable by others, not PEM, naming another node, not signed by the CA;
// the message names the file), or development certificates that cannot be made. ErrMembership:
// a membership change refused, or leadership handed to a node that cannot take it (this node,
// or one that is not a voter; the message names it). ErrRaft: Raft refused an operation.
// ErrInvalidRaftLog: Raft entries or a snapshot that cannot follow the log. ErrEncoding: a
// record or message that could not be encoded or decoded. ErrInternal: an error the ABI has
// no code for (the message says what it was). ErrPluginsDisabled: a library built without the
// WebAssembly plugin host (ffi/README.md, "Size") cannot load a policy. ErrInvalidSource: a
// token source name that is not "<kind>:<identity>", or a SourceID the fence never gave.
// ErrTooManySources: the fence knows as many sources as it can (1024). ErrRebaseRefused: a
// Rebase to the source the resource already takes tokens from, or whose "by" is not
// acceptable.
var (
	ErrNullArgument     = &Error{Status: C.FK_STATUS_NULL_ARGUMENT}
	ErrInvalidArgument  = &Error{Status: C.FK_STATUS_INVALID_ARGUMENT}
	ErrInvalidUTF8      = &Error{Status: C.FK_STATUS_INVALID_UTF8}
	ErrInvalidToken     = &Error{Status: C.FK_STATUS_INVALID_TOKEN}
	ErrInvalidKey       = &Error{Status: C.FK_STATUS_INVALID_KEY}
	ErrInvalidBatch     = &Error{Status: C.FK_STATUS_INVALID_BATCH}
	ErrInvalidConfig    = &Error{Status: C.FK_STATUS_INVALID_CONFIG}
	ErrUnknownResource  = &Error{Status: C.FK_STATUS_UNKNOWN_RESOURCE}
	ErrTooManyResources = &Error{Status: C.FK_STATUS_TOO_MANY_RESOURCES}
	ErrInvalidSource    = &Error{Status: C.FK_STATUS_INVALID_SOURCE}
	ErrTooManySources   = &Error{Status: C.FK_STATUS_TOO_MANY_SOURCES}
	ErrRebaseRefused    = &Error{Status: C.FK_STATUS_REBASE_REFUSED}
	ErrTooLarge         = &Error{Status: C.FK_STATUS_TOO_LARGE}
	ErrIO               = &Error{Status: C.FK_STATUS_IO}
	ErrCorrupt          = &Error{Status: C.FK_STATUS_CORRUPT}
	ErrLocked           = &Error{Status: C.FK_STATUS_LOCKED}
	ErrWrongCluster     = &Error{Status: C.FK_STATUS_WRONG_CLUSTER}
	ErrWrongOwner       = &Error{Status: C.FK_STATUS_WRONG_OWNER}
	ErrForked           = &Error{Status: C.FK_STATUS_FORKED}
	ErrLogFailed        = &Error{Status: C.FK_STATUS_LOG_FAILED}
	ErrInvalidRaftLog   = &Error{Status: C.FK_STATUS_INVALID_RAFT_LOG}
	ErrEncoding         = &Error{Status: C.FK_STATUS_ENCODING}
	ErrNotLeader        = &Error{Status: C.FK_STATUS_NOT_LEADER}
	ErrStopped          = &Error{Status: C.FK_STATUS_STOPPED}
	ErrTimeout          = &Error{Status: C.FK_STATUS_TIMEOUT}
	ErrMembership       = &Error{Status: C.FK_STATUS_MEMBERSHIP}
	ErrRaft             = &Error{Status: C.FK_STATUS_RAFT}
	ErrTransport        = &Error{Status: C.FK_STATUS_TRANSPORT}
	ErrNodeFailed       = &Error{Status: C.FK_STATUS_NODE_FAILED}
	ErrTLS              = &Error{Status: C.FK_STATUS_TLS}
	ErrPolicyRefused    = &Error{Status: C.FK_STATUS_POLICY_REFUSED}
	ErrPluginsDisabled  = &Error{Status: C.FK_STATUS_PLUGINS_DISABLED}
	ErrPanic            = &Error{Status: C.FK_STATUS_PANIC}
	ErrPoisoned         = &Error{Status: C.FK_STATUS_POISONED}
	ErrInternal         = &Error{Status: C.FK_STATUS_INTERNAL}
)

// ErrClosed is returned by every method of a closed handle.
var ErrClosed = errors.New("fencekit: the handle is closed")

// call runs one C call with the goroutine locked to its OS thread, so that the message read
// after a failure is the one this call left (the message is per OS thread).
func call(f func() C.fk_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if status := f(); status != C.FK_STATUS_OK {
		return lastError(status)
	}
	return nil
}

// lastError is the error for status, with the message the failing call left on this OS
// thread; the caller has locked the goroutine to that thread.
func lastError(status C.fk_status) error {
	return &Error{Status: Status(status), Message: C.GoString(C.fk_last_error_message())}
}

// abiVersion is the library's ABI version: also the smallest call into it, which the
// benchmarks use as their baseline.
func abiVersion() uint32 { return uint32(C.fk_abi_version()) }

// Version is the library's version.
func Version() string { return C.GoString(C.fk_version()) }

// CheckABI reports an error if the linked library has another ABI than this binding.
func CheckABI() error {
	if got := abiVersion(); got != C.FK_ABI_VERSION {
		return fmt.Errorf("fencekit: libfencekit has ABI %d, this binding was built for %d", got, C.FK_ABI_VERSION)
	}
	return nil
}

// byteArgs passes b to C as a pointer and a length (NULL and 0 when empty). The bytes hold
// no Go pointers, so cgo lets C read them for the call's duration.
func byteArgs(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// cToken is token as the C ABI takes it.
func cToken(t Token) C.fk_token {
	return C.fk_token{generation: C.uint64_t(t.Generation), holder: C.uint64_t(t.Holder)}
}
