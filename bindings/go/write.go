package fencekit

/*
#include <fencekit.h>
*/
import "C"

// WriteVerdict is the answer to Fence.CheckWrite. Test Accepted for the write, never
// Fence.Accepted(): the fence accepts a token whose payload the validator may refuse. Its
// zero value is a rejection, and it is what CheckWrite returns beside an error.
type WriteVerdict struct {
	// Fence is the fence's verdict on the token, as Check gives it.
	Fence Verdict
	// Accepted is true when the write may land: the fence accepted the token and the
	// validator, if any, the payload.
	Accepted bool
	// RejectionCode is the validator's reason (1 to 65535) when it refused the payload of an
	// accepted token, or 65536 and up when the plugin itself failed (trapped, deadline, bad
	// answer, too large, failed); 0 otherwise.
	RejectionCode uint32
}

// CheckWrite checks token for the resource as Check does, then, if the fence accepts it,
// the payload with the attached validator.
func (f *Fence) CheckWrite(resource uint32, token Token, payload []byte) (WriteVerdict, error) {
	ptr, err := f.acquire()
	if err != nil {
		return WriteVerdict{}, err
	}
	defer f.h.release()
	var v C.fk_write_verdict
	err = call(func() C.fk_status {
		p, n := byteArgs(payload)
		return C.fk_fence_check_write(ptr, C.uint32_t(resource), cToken(token), p, n, &v)
	})
	if err != nil {
		return WriteVerdict{}, err
	}
	return WriteVerdict{Fence: verdictOf(&v.fence), Accepted: v.accepted == 1, RejectionCode: uint32(v.rejection_code)}, nil
}

// SetValidator attaches a validator policy to the fence (nil detaches it). Every validator
// ever attached stays in memory until the fence is closed: attach at start or on a reload,
// not per request.
func (f *Fence) SetValidator(p *Policy) error {
	return f.attach(p, func(fence *C.fk_fence, policy *C.fk_policy) C.fk_status {
		return C.fk_fence_set_validator(fence, policy)
	})
}

// SetTieBreaker attaches a tie-breaker policy that settles conflicts (two holders of one
// generation); nil restores the default, which rejects every conflict.
func (f *Fence) SetTieBreaker(p *Policy) error {
	return f.attach(p, func(fence *C.fk_fence, policy *C.fk_policy) C.fk_status {
		return C.fk_fence_set_tie_breaker(fence, policy)
	})
}

func (f *Fence) attach(p *Policy, fn func(*C.fk_fence, *C.fk_policy) C.fk_status) error {
	ptr, err := f.acquire()
	if err != nil {
		return err
	}
	defer f.h.release()
	return p.with(func(policy *C.fk_policy) error {
		return call(func() C.fk_status { return fn(ptr, policy) })
	})
}
