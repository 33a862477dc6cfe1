package fencekit

/*
#include <fencekit.h>
*/
import "C"

import (
	"fmt"
	"time"
)

// PolicyKind is what a policy plugin decides.
type PolicyKind uint32

// The kinds of policy (FK_POLICY_*; plugins/README.md).
const (
	// PolicyValidator checks the payload of every write the fence accepts (Fence.CheckWrite).
	PolicyValidator PolicyKind = C.FK_POLICY_VALIDATOR
	// PolicyTieBreaker settles conflicts (two holders of one generation) and election priorities.
	PolicyTieBreaker PolicyKind = C.FK_POLICY_TIE_BREAKER
)

func (k PolicyKind) String() string {
	switch k {
	case PolicyValidator:
		return "validator"
	case PolicyTieBreaker:
		return "tie-breaker"
	}
	return fmt.Sprintf("PolicyKind(%d)", uint32(k))
}

// PolicyLimits bound what one plugin may use. DefaultPolicyLimits gives the library's.
type PolicyLimits struct {
	// ModuleBytesMax is the largest module accepted.
	ModuleBytesMax uint64
	// MemoryBytesMax is the most linear memory a validator may grow to.
	MemoryBytesMax uint64
	// Deadline is a validator's time per call (whole milliseconds in effect).
	Deadline time.Duration
	// Fuel is a tie-breaker's fuel per call: the same count on every replica.
	Fuel uint64
	// TableElementsMax is the most table elements.
	TableElementsMax uint64
}

// DefaultPolicyLimits are the limits LoadWasm applies.
func DefaultPolicyLimits() PolicyLimits {
	var l C.fk_policy_limits
	C.fk_policy_limits_default(&l)
	return PolicyLimits{
		ModuleBytesMax:   uint64(l.module_bytes_max),
		MemoryBytesMax:   uint64(l.memory_bytes_max),
		Deadline:         time.Duration(l.deadline_us) * time.Microsecond,
		Fuel:             uint64(l.fuel),
		TableElementsMax: uint64(l.table_elements_max),
	}
}

// Policy is a loaded WebAssembly policy plugin (plugin ABI v1). Attach a validator with
// Fence.SetValidator, a tie-breaker with Fence.SetTieBreaker or Config.TieBreaker. Fences and
// nodes keep their own reference, so closing a policy does not detach it.
type Policy struct {
	h    handle[*C.fk_policy]
	kind PolicyKind
}

// LoadWasm loads a policy plugin of kind from the bytes of a .wasm module (or WAT text) under
// the default limits. A module that imports anything but the host log, lacks an export or
// breaks a limit returns an error matching ErrPolicyRefused that names the cause.
func LoadWasm(module []byte, kind PolicyKind) (*Policy, error) {
	return LoadWasmWithLimits(module, kind, DefaultPolicyLimits())
}

// LoadWasmWithLimits is LoadWasm under other limits.
func LoadWasmWithLimits(module []byte, kind PolicyKind, limits PolicyLimits) (*Policy, error) {
	if limits.Deadline < 0 {
		return nil, &Error{Status: C.FK_STATUS_INVALID_ARGUMENT,
			Message: fmt.Sprintf("the deadline %v is negative", limits.Deadline)}
	}
	useDefaultLogger()
	l := C.fk_policy_limits{
		module_bytes_max:   C.uint64_t(limits.ModuleBytesMax),
		memory_bytes_max:   C.uint64_t(limits.MemoryBytesMax),
		deadline_us:        C.uint64_t(limits.Deadline / time.Microsecond),
		fuel:               C.uint64_t(limits.Fuel),
		table_elements_max: C.uint64_t(limits.TableElementsMax),
	}
	var ptr *C.fk_policy
	if err := call(func() C.fk_status {
		m, n := byteArgs(module)
		return C.fk_policy_load_wasm(m, n, C.fk_policy_kind(kind), &l, &ptr)
	}); err != nil {
		return nil, err
	}
	p := &Policy{kind: kind}
	own(p, &p.h, ptr, freePolicy)
	return p, nil
}

// Kind is what the policy decides.
func (p *Policy) Kind() PolicyKind { return p.kind }

func freePolicy(p *C.fk_policy) { C.fk_policy_free(p) }

// with runs body with the policy's pointer: NULL for a nil policy (which detaches), or
// ErrClosed for a closed one.
func (p *Policy) with(body func(*C.fk_policy) error) error {
	if p == nil {
		return body(nil)
	}
	return p.h.with(body)
}

// Close frees the policy; fences and nodes it was attached to keep using it. Closing twice
// is fine.
func (p *Policy) Close() error {
	if p != nil {
		p.h.free(freePolicy)
	}
	return nil
}
