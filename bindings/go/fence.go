package fencekit

/*
// Neither hot-path function keeps a pointer it is given. Both may call back into Go, through
// the log callback (a tie-breaker that fails logs a warning during a conflict's check): so no
// "nocallback", which would make such a record a fatal error.
#cgo noescape fkgo_check
#cgo noescape fk_fence_check_batch
#include <stdlib.h>
#include <fencekit.h>

// The hot check, with no Go pointer among its arguments (cgo checks each one it is given):
// the token as two integers, the answer returned by value.
typedef struct {
	fk_status status;
	fk_verdict verdict;
} fkgo_answer;

static fkgo_answer fkgo_check(const fk_fence *f, uint32_t resource, uint64_t generation,
                              uint64_t holder) {
	// Zeroed, so that a failure leaves FK_VERDICT_NONE beside its status, not stack garbage.
	fkgo_answer answer = {0};
	fk_token token = {generation, holder};
	answer.status = fk_fence_check(f, resource, token, &answer.verdict);
	return answer;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Token is a fencing token: the generation (Raft term, 1 to 2^63-1) and the node holding it
// (1 to 2^64-1).
type Token struct {
	Generation uint64
	Holder     uint64
}

// VerdictKind is the fence's answer to a token.
type VerdictKind uint32

// The verdicts (FK_VERDICT_*). Only VerdictAccepted and VerdictAdvanced let a write land.
const (
	VerdictNone     VerdictKind = C.FK_VERDICT_NONE
	VerdictAccepted VerdictKind = C.FK_VERDICT_ACCEPTED
	VerdictAdvanced VerdictKind = C.FK_VERDICT_ADVANCED
	VerdictStale    VerdictKind = C.FK_VERDICT_STALE
	VerdictConflict VerdictKind = C.FK_VERDICT_CONFLICT
	// VerdictForeignSource: the token comes from another source than the resource takes
	// tokens from (numbers of two coordinators are not comparable); Current and Previous are
	// zero. Fence.BoundSource names the resource's source and Fence.Rebase moves it.
	VerdictForeignSource VerdictKind = C.FK_VERDICT_FOREIGN_SOURCE
)

func (k VerdictKind) String() string {
	switch k {
	case VerdictAccepted:
		return "accepted"
	case VerdictAdvanced:
		return "advanced"
	case VerdictStale:
		return "stale"
	case VerdictConflict:
		return "conflict"
	case VerdictForeignSource:
		return "foreign source"
	}
	return "none"
}

// Verdict is the fence's answer to one token. Current is the resource's mark after the check;
// Previous the mark an advance replaced (zero for a resource's first).
//
// Its zero value (Kind VerdictNone) is a rejection, and it is what every check returns beside an
// error, so a caller who reads Accepted() without looking at the error still rejects.
type Verdict struct {
	Kind     VerdictKind
	Current  Token
	Previous Token
}

// Accepted is true when the write may land: Kind is VerdictAccepted or VerdictAdvanced. False for the zero
// Verdict.
func (v Verdict) Accepted() bool { return v.Kind == VerdictAccepted || v.Kind == VerdictAdvanced }

func verdictOf(v *C.fk_verdict) Verdict {
	return Verdict{
		Kind:     VerdictKind(v.kind),
		Current:  Token{uint64(v.current.generation), uint64(v.current.holder)},
		Previous: Token{uint64(v.previous.generation), uint64(v.previous.holder)},
	}
}

// Counters is what a fence decided for one resource since it was opened.
type Counters struct {
	Accepted, Advanced, Stale, Conflicts uint64
}

// BatchMax is the most items one CheckBatch takes.
const BatchMax = C.FK_BATCH_MAX

// Fence is the durable high-water mark of every resource of one storage. Its methods are
// safe for concurrent use, Close included (it waits for the calls running).
type Fence struct {
	h handle[*C.fk_fence]
}

// Open opens the fence whose log is in dir, restoring every mark; in an empty (or missing)
// directory it makes a new one. A directory holding files but no log, or another owner's log
// (a node's), fails with ErrWrongOwner; a damaged, shortened or swapped log with ErrCorrupt.
// A Fence belongs to the process that opened it: used in a child after fork it fails with
// ErrForked (Go programs do not fork without exec, but a C host embedding Go might).
func Open(dir string) (*Fence, error) {
	return OpenWith(dir, Options{})
}

// Options of OpenWith. Zero fields take the library's defaults.
type Options struct {
	// MaxResources is how many resources the fence can hold: 1 to 2^20 (default 65536).
	MaxResources uint64
	// SegmentSize is the size in bytes of each log segment file: a multiple of 4096 from
	// 64 KiB to 1 GiB (default 16 MiB).
	SegmentSize uint64
}

// OpenWith is Open with options; a value out of range fails with ErrInvalidArgument.
func OpenWith(dir string, opts Options) (*Fence, error) {
	useDefaultLogger()
	cdir := C.CString(dir)
	defer C.free(unsafe.Pointer(cdir))
	var copts C.fk_fence_options
	if err := call(func() C.fk_status { return C.fk_fence_options_default(&copts) }); err != nil {
		return nil, err
	}
	if opts.MaxResources != 0 {
		copts.max_resources = C.uint64_t(opts.MaxResources)
	}
	if opts.SegmentSize != 0 {
		copts.segment_size = C.uint64_t(opts.SegmentSize)
	}
	var ptr *C.fk_fence
	if err := call(func() C.fk_status {
		return C.fk_fence_open(cdir, C.size_t(len(dir)), &copts, &ptr)
	}); err != nil {
		return nil, err
	}
	f := &Fence{}
	// A safety net for a fence never closed; Close is the way (and cancels it).
	own(f, &f.h, ptr, freeFence)
	return f, nil
}

func freeFence(p *C.fk_fence) { C.fk_fence_free(p) }

// acquire returns the live fence, held until f.h.release(); or ErrClosed.
func (f *Fence) acquire() (*C.fk_fence, error) {
	if f == nil {
		return nil, ErrClosed
	}
	return f.h.acquire()
}

// Close closes the fence once the calls running return; every mark it reported is durable
// already. Closing twice is fine.
func (f *Fence) Close() error {
	if f != nil {
		f.h.free(freeFence)
	}
	return nil
}

// Register registers the resource named key (1 to 256 bytes) and returns its id.
func (f *Fence) Register(key []byte) (uint32, error) {
	return f.resourceOf(key, func(ptr *C.fk_fence, k *C.uint8_t, n C.size_t, id *C.uint32_t) C.fk_status {
		return C.fk_fence_register(ptr, k, n, id)
	})
}

// Lookup returns the id of a registered key, or an error matching ErrUnknownResource.
func (f *Fence) Lookup(key []byte) (uint32, error) {
	return f.resourceOf(key, func(ptr *C.fk_fence, k *C.uint8_t, n C.size_t, id *C.uint32_t) C.fk_status {
		return C.fk_fence_lookup(ptr, k, n, id)
	})
}

// resourceOf runs a call that maps a key to a resource id.
func (f *Fence) resourceOf(key []byte, fn func(*C.fk_fence, *C.uint8_t, C.size_t, *C.uint32_t) C.fk_status) (uint32, error) {
	ptr, err := f.acquire()
	if err != nil {
		return 0, err
	}
	defer f.h.release()
	var id C.uint32_t
	err = call(func() C.fk_status {
		k, n := byteArgs(key)
		return fn(ptr, k, n, &id)
	})
	return uint32(id), err
}

// Check checks token for the resource id: the hot path. A write may land only when err is
// nil and the verdict is Accepted().
func (f *Fence) Check(resource uint32, token Token) (Verdict, error) {
	ptr, err := f.acquire()
	if err != nil {
		return Verdict{}, err
	}
	defer f.h.release()
	// Locked to the OS thread, so that a failure's message (kept per OS thread) is this
	// call's; locking costs a few nanoseconds, far less than passing a buffer through cgo.
	runtime.LockOSThread()
	answer := C.fkgo_check(ptr, C.uint32_t(resource), C.uint64_t(token.Generation), C.uint64_t(token.Holder))
	if answer.status != C.FK_STATUS_OK {
		err := lastError(answer.status)
		runtime.UnlockOSThread()
		return Verdict{}, err
	}
	runtime.UnlockOSThread()
	return verdictOf(&answer.verdict), nil
}

// CheckKey checks token for the resource named key, registering it if new.
func (f *Fence) CheckKey(key []byte, token Token) (Verdict, error) {
	ptr, err := f.acquire()
	if err != nil {
		return Verdict{}, err
	}
	defer f.h.release()
	var v C.fk_verdict
	err = call(func() C.fk_status {
		k, n := byteArgs(key)
		return C.fk_fence_check_key(ptr, k, n, cToken(token), &v)
	})
	if err != nil {
		return Verdict{}, err
	}
	return verdictOf(&v), nil
}

// Item is one check of a batch.
type Item struct {
	Resource uint32
	Token    Token
}

// Batch is a batch of checks prepared once and checked many times, crossing into the library
// once per CheckBatch; nothing is allocated per check. Its items and verdicts live in C
// memory, so cgo has no Go memory to inspect on each call.
//
// Its verdicts are those of the last CheckBatch. One that returned an error leaves every
// verdict VerdictNone (a rejection), never an earlier check's VerdictAccepted; before the first check
// every verdict is VerdictNone too.
//
// A Batch is not safe for concurrent use: it belongs to one goroutine at a time, since its
// verdicts are the last CheckBatch's, whichever goroutine ran it. A CheckBatch while another
// runs on the same Batch fails with ErrInvalidArgument, and verdicts read meanwhile read
// VerdictNone; give each goroutine its own Batch.
type Batch struct {
	items    []C.fk_check_item
	verdicts []C.fk_verdict
	// Set while a CheckBatch writes the verdicts: a second CheckBatch meanwhile is refused, and
	// a verdict read meanwhile reads None (a Batch belongs to one goroutine; see Batch).
	checking atomic.Bool
}

// NewBatch prepares a batch of at most BatchMax items.
func NewBatch(items []Item) (*Batch, error) {
	if len(items) > BatchMax {
		return nil, &Error{Status: C.FK_STATUS_INVALID_BATCH,
			Message: fmt.Sprintf("%d items; a batch holds at most %d", len(items), BatchMax)}
	}
	n := max(len(items), 1)
	itemsPtr := (*C.fk_check_item)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.fk_check_item{}))))
	verdictsPtr := (*C.fk_verdict)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(C.fk_verdict{}))))
	b := &Batch{items: unsafe.Slice(itemsPtr, n)[:len(items)], verdicts: unsafe.Slice(verdictsPtr, n)[:len(items)]}
	runtime.AddCleanup(b, func(p [2]unsafe.Pointer) {
		C.free(p[0])
		C.free(p[1])
	}, [2]unsafe.Pointer{unsafe.Pointer(itemsPtr), unsafe.Pointer(verdictsPtr)})
	for i, item := range items {
		b.items[i].resource = C.uint32_t(item.Resource)
		b.items[i].token.generation = C.uint64_t(item.Token.Generation)
		b.items[i].token.holder = C.uint64_t(item.Token.Holder)
	}
	return b, nil
}

// Len is the number of items.
func (b *Batch) Len() int { return len(b.items) }

// Kind is the verdict of item i from the last CheckBatch (VerdictNone while one runs).
func (b *Batch) Kind(i int) VerdictKind {
	if b.checking.Load() {
		return VerdictNone
	}
	return VerdictKind(b.verdicts[i].kind)
}

// Accepted is true when the last CheckBatch lets the write of item i land (false while one
// runs).
func (b *Batch) Accepted(i int) bool {
	k := b.Kind(i)
	return k == VerdictAccepted || k == VerdictAdvanced
}

// Verdict is the full verdict of item i from the last CheckBatch (the zero Verdict while one
// runs).
func (b *Batch) Verdict(i int) Verdict {
	if b.checking.Load() {
		return Verdict{}
	}
	return verdictOf(&b.verdicts[i])
}

// CheckBatch checks every item of b in one call. A bad item fails the batch with nothing
// checked. Whenever it returns an error, every verdict of b is VerdictNone: the library rejects the
// array on each of its failures, and a failure before the call (a closed fence) rejects it
// here.
func (f *Fence) CheckBatch(b *Batch) error {
	if b == nil {
		return fmt.Errorf("%w: no batch (NewBatch failed?)", ErrNullArgument)
	}
	// The verdicts are the batch's memory: two goroutines checking one batch would each read
	// the other's answers (a stale token of one fence read as accepted by another's check).
	if !b.checking.CompareAndSwap(false, true) {
		return &Error{Status: C.FK_STATUS_INVALID_ARGUMENT,
			Message: "this Batch is being checked by another goroutine: a Batch belongs to one goroutine at a time (make one per goroutine)"}
	}
	defer b.checking.Store(false)
	ptr, err := f.acquire()
	if err != nil {
		clear(b.verdicts)
		return err
	}
	defer f.h.release()
	if len(b.items) == 0 {
		return nil
	}
	runtime.LockOSThread()
	status := C.fk_fence_check_batch(ptr, &b.items[0], &b.verdicts[0], C.size_t(len(b.items)))
	if status != C.FK_STATUS_OK {
		err = lastError(status)
	}
	runtime.UnlockOSThread()
	runtime.KeepAlive(b)
	return err
}

// Mark is the resource's current mark; ok is false when it has none yet.
func (f *Fence) Mark(resource uint32) (token Token, ok bool, err error) {
	ptr, err := f.acquire()
	if err != nil {
		return Token{}, false, err
	}
	defer f.h.release()
	var t C.fk_token
	err = call(func() C.fk_status { return C.fk_fence_mark(ptr, C.uint32_t(resource), &t) })
	return Token{uint64(t.generation), uint64(t.holder)}, t.generation != 0, err
}

// SetCountAccepted turns the counting of accepted checks (Counters.Accepted) on or off; it is
// on when a fence opens. A service that never reads that count turns it off to take its cost
// off Check's hot path; the other counts, and the accepted checks counted so far, are kept.
func (f *Fence) SetCountAccepted(on bool) error {
	ptr, err := f.acquire()
	if err != nil {
		return err
	}
	defer f.h.release()
	return call(func() C.fk_status { return C.fk_fence_set_count_accepted(ptr, C.bool(on)) })
}

// Counters is what the fence decided for the resource since it was opened.
func (f *Fence) Counters(resource uint32) (Counters, error) {
	ptr, err := f.acquire()
	if err != nil {
		return Counters{}, err
	}
	defer f.h.release()
	var c C.fk_counters
	err = call(func() C.fk_status { return C.fk_fence_counters(ptr, C.uint32_t(resource), &c) })
	return Counters{uint64(c.accepted), uint64(c.advanced), uint64(c.stale), uint64(c.conflicts)}, err
}
