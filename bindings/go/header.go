package fencekit

/*
#include <fencekit.h>
*/
import "C"

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// TokenHeader is the HTTP header (or gRPC metadata key, in lower case) that carries a
// leader's fencing token and its source to a storage, so that the storage can check it with
// Fence.CheckFrom. Its value is FormatToken's: "<source> <generation> <holder>", the numbers in
// decimal, for example "etcd:8e9e05c52164694d 1207 7587886613012381443". A source name has no
// spaces, so the value splits without quoting.
const TokenHeader = "Fencekit-Token"

// FormatToken is the TokenHeader value of token from source.
func FormatToken(source string, token Token) string {
	return source + " " + strconv.FormatUint(token.Generation, 10) + " " + strconv.FormatUint(token.Holder, 10)
}

// ParseToken reads a TokenHeader value. It checks the form only: exactly three fields, the
// numbers in plain decimal (no sign, no leading zeros) within 64 bits; a value that is not so
// fails with an error matching ErrInvalidToken. The fence judges the rest: Fence.SourceID the
// name (ErrInvalidSource), Fence.CheckFrom the numbers (ErrInvalidToken for a generation of 0
// or above 2^63-1, or a holder of 0) and their freshness.
func ParseToken(value string) (source string, token Token, err error) {
	bad := func(why string) (string, Token, error) {
		return "", Token{}, &Error{Status: C.FK_STATUS_INVALID_TOKEN,
			Message: fmt.Sprintf("%s value %q: %s", TokenHeader, value, why)}
	}
	fields := strings.Split(value, " ")
	if len(fields) != 3 {
		return bad(`not "<source> <generation> <holder>"`)
	}
	var numbers [2]uint64
	for i, f := range fields[1:] {
		if f == "" || f[0] < '1' || f[0] > '9' {
			return bad(fmt.Sprintf("%q is not a number from 1 in plain decimal", f))
		}
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return bad(fmt.Sprintf("%q is not a 64-bit number", f))
		}
		numbers[i] = n
	}
	return fields[0], Token{Generation: numbers[0], Holder: numbers[1]}, nil
}

// TokenRoundTripper wraps base (http.DefaultTransport when nil) so that every request carries
// the token of source in the TokenHeader header: the client side of a fenced storage. A
// request already carrying a TokenHeader is refused without being sent (two tokens for one
// request). When stop is not nil it is asked before each request, and a non-nil answer (the
// term is known to be over) is returned instead of sending. Every refusal closes the request's
// body, as a RoundTripper must. Make one per term: a token is never carried across an
// election. The coordinators' adapters (etcdfence, k8sfence) build theirs with it.
func TokenRoundTripper(base http.RoundTripper, source string, token Token, stop func() error) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &tokenTransport{base: base, value: FormatToken(source, token), stop: stop}
}

type tokenTransport struct {
	base  http.RoundTripper
	value string
	stop  func() error
}

func (t *tokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	refuse := func(err error) (*http.Response, error) {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	if t.stop != nil {
		if err := t.stop(); err != nil {
			return refuse(err)
		}
	}
	if req.Header.Get(TokenHeader) != "" {
		return refuse(fmt.Errorf("fencekit: the request already carries a %s header: two tokens for one request", TokenHeader))
	}
	r := req.Clone(req.Context())
	r.Header.Set(TokenHeader, t.value)
	return t.base.RoundTrip(r)
}
