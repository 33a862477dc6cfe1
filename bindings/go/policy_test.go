package fencekit

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// lowestWins is a tie-breaker: a conflict goes to the lower holder; priority is 100 minus
// the node's id.
const lowestWins = `(module
  (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 1024))
  (func (export "fk_input_capacity") (result i32) (i32.const 1024))
  (func (export "fk_election_priority") (param $len i32) (result i64)
    (i64.sub (i64.const 100) (i64.load offset=8 (i32.const 1024))))
  (func (export "fk_resolve_conflict") (param $len i32) (result i32)
    (i64.lt_u (i64.load offset=32 (i32.const 1024)) (i64.load offset=16 (i32.const 1024)))))`

func loadExample(t *testing.T, name string, kind PolicyKind) *Policy {
	t.Helper()
	module, err := os.ReadFile("../../plugins/examples/wat/" + name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadWasm(module, kind)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestAValidatorChecksPayloadsOfAcceptedTokens(t *testing.T) {
	f := open(t, t.TempDir())
	defer f.Close()
	r, _ := f.Register([]byte("ledger"))
	p := loadExample(t, "max_payload.wat", PolicyValidator)
	if p.Kind() != PolicyValidator {
		t.Fatalf("kind %v", p.Kind())
	}
	if err := f.SetValidator(p); err != nil {
		t.Fatal(err)
	}
	// Closing the policy does not detach it: the fence keeps its own reference.
	p.Close()
	if w, err := f.CheckWrite(r, Token{1, 1}, []byte("short")); err != nil || !w.Accepted || w.Fence.Kind != VerdictAdvanced {
		t.Fatalf("a short payload: %+v %v", w, err)
	}
	long := []byte(strings.Repeat("x", 300))
	if w, err := f.CheckWrite(r, Token{1, 1}, long); err != nil || w.Accepted || w.RejectionCode != 1 || w.Fence.Kind != VerdictAccepted {
		t.Fatalf("a long payload: %+v %v", w, err)
	}
	// A refused payload's newer token still advances the mark: it fences older holders
	// whatever it carried.
	if w, _ := f.CheckWrite(r, Token{2, 1}, long); w.Accepted || w.Fence.Kind != VerdictAdvanced {
		t.Fatalf("a newer token with a long payload: %+v", w)
	}
	if w, _ := f.CheckWrite(r, Token{1, 1}, []byte("short")); w.Accepted || w.Fence.Kind != VerdictStale {
		t.Fatalf("the older token after the advance: %+v", w)
	}
	if w, _ := f.CheckWrite(r, Token{0, 1}, nil); w.Accepted {
		t.Fatalf("an invalid token wrote: %+v", w)
	}
	if err := f.SetValidator(nil); err != nil {
		t.Fatal(err)
	}
	if w, _ := f.CheckWrite(r, Token{2, 1}, long); !w.Accepted {
		t.Fatalf("detached, a long payload: %+v", w)
	}
	if err := f.SetValidator(p); !errors.Is(err, ErrClosed) {
		t.Fatalf("attaching a closed policy: %v", err)
	}
}

func TestATieBreakerSettlesConflicts(t *testing.T) {
	f := open(t, t.TempDir())
	defer f.Close()
	r, _ := f.Register([]byte("shard-7"))
	f.Check(r, Token{5, 3})
	if v, _ := f.Check(r, Token{5, 2}); v.Kind != VerdictConflict {
		t.Fatalf("without a tie-breaker: %+v", v)
	}
	tb, err := LoadWasm([]byte(lowestWins), PolicyTieBreaker)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if err := f.SetTieBreaker(tb); err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Check(r, Token{5, 2}); !v.Accepted() || v.Current != (Token{5, 2}) {
		t.Fatalf("the lower holder challenges: %+v", v)
	}
	if v, _ := f.Check(r, Token{5, 3}); v.Accepted() {
		t.Fatalf("the higher holder won back: %+v", v)
	}
	if err := f.SetValidator(tb); err == nil {
		t.Fatal("a tie-breaker was attached as a validator")
	}
	// A node elects with the tie-breaker deciding its priority.
	config := group(t, 1)[0]
	config.TieBreaker, config.Descriptor = tb, "zone=a"
	n := start(t, config)
	leaderOf(t, []*Node{n}, -1)
}

func TestRefusedModulesNameTheCause(t *testing.T) {
	cases := []struct {
		module string
		kind   PolicyKind
		text   string
	}{
		{`(module (import "wasi_snapshot_preview1" "fd_write" (func)))`, PolicyValidator, "fd_write"},
		{`(module (memory (export "memory") 1))`, PolicyValidator, "fk_abi_version"},
		{"not wasm at all", PolicyValidator, ""},
		{"", PolicyValidator, ""},
		{lowestWins, PolicyKind(9), ""},
	}
	for _, c := range cases {
		p, err := LoadWasm([]byte(c.module), c.kind)
		if err == nil || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%.40q as %v: %v, want an error naming %q", c.module, c.kind, err, c.text)
		}
		if p != nil {
			t.Errorf("%.40q: a policy loaded", c.module)
		}
	}
	if _, err := LoadWasm([]byte(`(module (import "wasi_snapshot_preview1" "fd_write" (func)))`), PolicyValidator); !errors.Is(err, ErrPolicyRefused) {
		t.Errorf("a WASI import: %v", err)
	}
	small := DefaultPolicyLimits()
	small.ModuleBytesMax = 16
	if _, err := LoadWasmWithLimits([]byte(lowestWins), PolicyTieBreaker, small); !errors.Is(err, ErrPolicyRefused) {
		t.Errorf("a module over the size limit: %v", err)
	}
	small.Deadline = -1
	if _, err := LoadWasmWithLimits([]byte(lowestWins), PolicyTieBreaker, small); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("a negative deadline: %v", err)
	}
}
