package fencekit

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

func open(t *testing.T, dir string) *Fence {
	t.Helper()
	f, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestVerdictsAndReopen(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir)
	jobs, err := f.Register([]byte("jobs/nightly"))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		token Token
		want  VerdictKind
	}{{Token{4, 1}, VerdictAdvanced}, {Token{4, 1}, VerdictAccepted}, {Token{4, 2}, VerdictConflict}, {Token{5, 2}, VerdictAdvanced}, {Token{4, 1}, VerdictStale}}
	for _, s := range steps {
		v, err := f.Check(jobs, s.token)
		if err != nil || v.Kind != s.want {
			t.Fatalf("check %v: %v %v, want %v", s.token, v.Kind, err, s.want)
		}
	}
	f.Close()
	f.Close()
	if _, err := f.Check(jobs, Token{5, 2}); !errors.Is(err, ErrClosed) {
		t.Fatalf("a closed fence answered: %v", err)
	}
	f = open(t, dir)
	defer f.Close()
	v, err := f.CheckKey([]byte("jobs/nightly"), Token{4, 1})
	if err != nil || v.Kind != VerdictStale || v.Current != (Token{5, 2}) {
		t.Fatalf("after reopening: %+v %v", v, err)
	}
}

// A service that reads no accepted count turns counting off: every verdict and the other
// counts stay, and counting on again resumes from the count kept.
func TestAcceptedCountingOffKeepsVerdictsAndOtherCounts(t *testing.T) {
	f := open(t, t.TempDir())
	defer f.Close()
	r, err := f.Register([]byte("quiet"))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		token Token
		want  VerdictKind
	}{{Token{2, 1}, VerdictAdvanced}, {Token{2, 1}, VerdictAccepted}}
	for _, s := range steps {
		if v, err := f.Check(r, s.token); err != nil || v.Kind != s.want {
			t.Fatalf("check %v: %v %v", s.token, v.Kind, err)
		}
	}
	if err := f.SetCountAccepted(false); err != nil {
		t.Fatal(err)
	}
	if v, err := f.Check(r, Token{2, 1}); err != nil || v.Kind != VerdictAccepted {
		t.Fatalf("uncounted check: %v %v", v.Kind, err)
	}
	if v, err := f.Check(r, Token{1, 1}); err != nil || v.Kind != VerdictStale {
		t.Fatalf("stale check: %v %v", v.Kind, err)
	}
	if c, err := f.Counters(r); err != nil || c != (Counters{Accepted: 1, Advanced: 1, Stale: 1}) {
		t.Fatalf("counters %+v %v", c, err)
	}
	if err := f.SetCountAccepted(true); err != nil {
		t.Fatal(err)
	}
	f.Check(r, Token{2, 1})
	if c, _ := f.Counters(r); c.Accepted != 2 {
		t.Fatalf("counting on again: %+v", c)
	}
	f.Close()
	if err := f.SetCountAccepted(true); !errors.Is(err, ErrClosed) {
		t.Fatalf("a closed fence: %v", err)
	}
}

func TestBadInputIsAnErrorWithItsStatus(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir)
	defer f.Close()
	r, _ := f.Register([]byte("r"))
	cases := []struct {
		err  error
		want error
	}{}
	_, err := f.Check(r, Token{0, 1})
	cases = append(cases, struct{ err, want error }{err, ErrInvalidToken})
	_, err = f.Check(r, Token{1 << 63, 1})
	cases = append(cases, struct{ err, want error }{err, ErrInvalidToken})
	_, err = f.Check(4242, Token{1, 1})
	cases = append(cases, struct{ err, want error }{err, ErrUnknownResource})
	_, err = f.Register(nil)
	cases = append(cases, struct{ err, want error }{err, ErrInvalidKey})
	_, err = f.Register([]byte(strings.Repeat("k", 257)))
	cases = append(cases, struct{ err, want error }{err, ErrInvalidKey})
	_, err = f.Lookup([]byte("never"))
	cases = append(cases, struct{ err, want error }{err, ErrUnknownResource})
	// A key no fence can hold is a bad key for a lookup too, not an unregistered one.
	_, err = f.Lookup(nil)
	cases = append(cases, struct{ err, want error }{err, ErrInvalidKey})
	_, err = f.Lookup([]byte(strings.Repeat("k", 257)))
	cases = append(cases, struct{ err, want error }{err, ErrInvalidKey})
	// A holder is a node id: up to 2^64-1, not 2^63-1 as a generation.
	_, err = f.Check(r, Token{1, 1<<64 - 1})
	cases = append(cases, struct{ err, want error }{err, nil})
	_, err = Open(dir)
	cases = append(cases, struct{ err, want error }{err, ErrLocked})
	for i, c := range cases {
		if !errors.Is(c.err, c.want) {
			t.Errorf("case %d: got %v, want %v", i, c.err, c.want)
		}
		if c.want == nil {
			continue
		}
		var e *Error
		if !errors.As(c.err, &e) || e.Message == "" {
			t.Errorf("case %d: no message in %v", i, c.err)
		}
	}
	if _, err := NewBatch(make([]Item, BatchMax+1)); !errors.Is(err, ErrInvalidBatch) {
		t.Errorf("an oversized batch: %v", err)
	}
}

func TestConcurrentChecksSeeTheirOwnVerdictsAndMessages(t *testing.T) {
	f := open(t, t.TempDir())
	defer f.Close()
	var ids []uint32
	for i := 0; i < 4; i++ {
		id, _ := f.Register([]byte{'r', byte('0' + i)})
		f.Check(id, Token{uint64(10 + i), uint64(i + 1)})
		ids = append(ids, id)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; n < 2000; n++ {
				v, err := f.Check(ids[i], Token{1, 1})
				if err != nil || v.Kind != VerdictStale || v.Current != (Token{uint64(10 + i), uint64(i + 1)}) {
					t.Errorf("goroutine %d: %+v %v", i, v, err)
					return
				}
				if _, err := f.Check(ids[i], Token{0, 1}); !strings.Contains(err.Error(), "generation 0") {
					t.Errorf("goroutine %d: wrong message %v", i, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
}

// The conformance vectors (tests/vectors/README.md), as the Rust, C and Python tests run them.

type step struct {
	Op     string         `json:"op"`
	Key    *string        `json:"key"`
	KeyLen *int           `json:"key_len"`
	ID     *uint32        `json:"id"`
	Token  []json.Number  `json:"token"`
	Items  []step         `json:"items"`
	Expect map[string]any `json:"expect"`
}

func (s step) key() []byte {
	if s.Key != nil {
		return []byte(*s.Key)
	}
	return []byte(strings.Repeat("k", *s.KeyLen))
}

func number(v any) uint64 {
	switch n := v.(type) {
	case json.Number:
		u, _ := strconv.ParseUint(n.String(), 10, 64)
		return u
	case string:
		u, _ := strconv.ParseUint(n, 10, 64)
		return u
	}
	panic("not a number")
}

func token(pair []json.Number) Token { return Token{number(pair[0]), number(pair[1])} }

func tokenOf(v any) Token {
	if v == nil {
		return Token{}
	}
	pair := v.([]any)
	return Token{number(pair[0]), number(pair[1])}
}

// statusName is the status of err as the vectors name it: ErrInvalidKey is "invalid_key".
func statusName(err error) string {
	if err == nil {
		return "ok"
	}
	var e *Error
	if errors.As(err, &e) {
		return strings.ToLower(strings.TrimPrefix(e.Status.Name(), "FK_STATUS_"))
	}
	return err.Error()
}

// compareMessage checks that err's text contains every string of want (a list, or nil).
func compareMessage(t *testing.T, context string, err error, want any) {
	t.Helper()
	if want == nil || err == nil {
		return
	}
	for _, part := range want.([]any) {
		if !strings.Contains(err.Error(), part.(string)) {
			t.Errorf("%s: the message does not name %q: %v", context, part, err)
		}
	}
}

func runVector(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	decoder := json.NewDecoder(strings.NewReader(string(raw)))
	decoder.UseNumber()
	var vector struct {
		Name  string `json:"name"`
		Steps []step `json:"steps"`
	}
	if err := decoder.Decode(&vector); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := open(t, dir)
	defer func() { f.Close() }()
	ids := map[string]uint32{}
	for i, s := range vector.Steps {
		var (
			err      error
			verdict  *Verdict
			verdicts []VerdictKind
			mark     *Token
			counters *Counters
			// What the binding's idiom reads: the verdict a check returned (beside its error
			// too), each batch item's Accepted() (after a failure too).
			answer   Verdict
			accepted []bool
		)
		switch s.Op {
		case "register":
			var id uint32
			if id, err = f.Register(s.key()); err == nil {
				ids[string(s.key())] = id
			}
		case "lookup":
			_, err = f.Lookup(s.key())
		case "check", "check_id":
			id := ids[string(s.key0())]
			if s.ID != nil {
				id = *s.ID
			}
			var v Verdict
			if v, err = f.Check(id, token(s.Token)); err == nil {
				verdict = &v
			}
			answer = v
		case "check_key":
			var v Verdict
			if v, err = f.CheckKey(s.key(), token(s.Token)); err == nil {
				verdict = &v
				ids[string(s.key())], _ = f.Lookup(s.key())
			}
			answer = v
		case "batch":
			items := make([]Item, len(s.Items))
			for j, it := range s.Items {
				id := ids[string(it.key0())]
				if it.ID != nil {
					id = *it.ID
				}
				items[j] = Item{id, token(it.Token)}
			}
			b, _ := NewBatch(items)
			reuse(b)
			err = f.CheckBatch(b)
			verdicts = []VerdictKind{}
			accepted = []bool{}
			for j := 0; j < b.Len(); j++ {
				verdicts = append(verdicts, b.Kind(j))
				accepted = append(accepted, b.Accepted(j))
			}
		case "mark":
			var m Token
			if m, _, err = f.Mark(ids[string(s.key())]); err == nil {
				mark = &m
			}
		case "counters":
			var c Counters
			if c, err = f.Counters(ids[string(s.key())]); err == nil {
				counters = &c
			}
		case "reopen":
			f.Close()
			f = open(t, dir)
			for k := range ids {
				ids[k], _ = f.Lookup([]byte(k))
			}
			continue
		default:
			t.Fatalf("unknown op %s", s.Op)
		}
		context := vector.Name + " step " + strconv.Itoa(i) + " (" + s.Op + ")"
		e := s.Expect
		if e == nil {
			continue
		}
		if want, ok := e["status"]; ok {
			if got := statusName(err); got != want {
				t.Errorf("%s: status %s, want %s", context, got, want)
			}
			compareMessage(t, context, err, e["message"])
			if s.Op == "batch" {
				// What the reused batch reads after the failure.
				compareKinds(t, context, verdicts, e["verdicts"])
				compareAccepted(t, context, accepted, e["accepted"])
			} else if want, ok := e["accepted"]; ok && answer.Accepted() != want {
				t.Errorf("%s: the verdict returned beside %v reads Accepted() %v", context, err, answer.Accepted())
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", context, err)
			continue
		}
		if want, ok := e["verdict"]; ok {
			if verdict.Kind.String() != want {
				t.Errorf("%s: verdict %v, want %v", context, verdict.Kind, want)
			}
			if c, ok := e["current"]; ok && verdict.Current != tokenOf(c) {
				t.Errorf("%s: current %v", context, verdict.Current)
			}
			if p, ok := e["previous"]; ok && verdict.Previous != tokenOf(p) {
				t.Errorf("%s: previous %v", context, verdict.Previous)
			}
			if a, ok := e["accepted"]; ok && verdict.Accepted() != a {
				t.Errorf("%s: a %v verdict reads Accepted() %v", context, verdict.Kind, verdict.Accepted())
			}
		}
		if _, ok := e["verdicts"]; ok {
			compareKinds(t, context, verdicts, e["verdicts"])
			compareAccepted(t, context, accepted, e["accepted"])
		}
		if want, ok := e["mark"]; ok && *mark != tokenOf(want) {
			t.Errorf("%s: mark %v", context, *mark)
		}
		if want, ok := e["counters"]; ok {
			w := want.(map[string]any)
			got := []uint64{counters.Accepted, counters.Advanced, counters.Stale, counters.Conflicts}
			for j, name := range []string{"accepted", "advanced", "stale", "conflicts"} {
				if got[j] != number(w[name]) {
					t.Errorf("%s: %s = %d", context, name, got[j])
				}
			}
		}
	}
}

// reuse makes b a batch reused from an earlier check whose every verdict was VerdictAccepted
// (tests/vectors/README.md: a failed check must not leave them).
func reuse(b *Batch) {
	for j := range b.verdicts {
		// The kind is a C uint32_t, which a test file cannot name.
		*(*uint32)(unsafe.Pointer(&b.verdicts[j].kind)) = uint32(VerdictAccepted)
	}
	for j := 0; j < b.Len(); j++ {
		if !b.Accepted(j) {
			panic("reuse did not take")
		}
	}
}

func compareKinds(t *testing.T, context string, got []VerdictKind, want any) {
	t.Helper()
	if want == nil {
		return
	}
	w := want.([]any)
	if len(w) != len(got) {
		t.Errorf("%s: %d verdicts, want %d", context, len(got), len(w))
		return
	}
	for j := range w {
		if got[j].String() != w[j] {
			t.Errorf("%s: verdict %d is %v, want %v", context, j, got[j], w[j])
		}
	}
}

func compareAccepted(t *testing.T, context string, got []bool, want any) {
	t.Helper()
	if want == nil {
		return
	}
	w := want.([]any)
	if len(w) != len(got) {
		t.Errorf("%s: %d answers, want %d", context, len(got), len(w))
		return
	}
	for j := range w {
		if got[j] != w[j] {
			t.Errorf("%s: item %d reads Accepted() %v, want %v", context, j, got[j], w[j])
		}
	}
}

func (s step) key0() []byte {
	if s.Key == nil && s.KeyLen == nil {
		return nil
	}
	return s.key()
}

func TestConformanceVectors(t *testing.T) {
	files, _ := filepath.Glob("../../tests/vectors/*.json")
	sort.Strings(files)
	if len(files) < 5 {
		t.Fatalf("found only %v", files)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runVector(t, file) })
	}
}

func TestCloseWhileOtherGoroutinesCheckIsSafe(t *testing.T) {
	dir := t.TempDir()
	f := open(t, dir)
	r, _ := f.Register([]byte("r"))
	items := make([]Item, 64)
	for i := range items {
		items[i] = Item{r, Token{1, 1}}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch, _ := NewBatch(items) // a Batch belongs to one goroutine
			for {
				_, err := f.Check(r, Token{1, 1})
				if err == nil {
					err = f.CheckBatch(batch)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	f.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("a check racing Close: %v", err)
		}
	}
	// Freed, so the directory is free again.
	open(t, dir).Close()
}

// I7: no answer a failed call gives reads as acceptance. Every check returns the zero Verdict
// (a rejection) beside its error; a Batch's reused verdicts read VerdictNone after any failed
// CheckBatch, whether the library refused it or the call never reached the library (a closed
// fence), and before its first check.
func TestNoFailedCallReadsAsAcceptance(t *testing.T) {
	if (Verdict{}).Accepted() || (WriteVerdict{}).Accepted || (WriteVerdict{}).Fence.Accepted() {
		t.Fatal("a zero verdict reads as acceptance")
	}
	dir := t.TempDir()
	f := open(t, dir)
	r, _ := f.Register([]byte("r"))
	if v, err := f.Check(r, Token{2, 1}); err != nil || !v.Accepted() {
		t.Fatalf("first check: %+v %v", v, err)
	}
	for i, call := range []func() (Verdict, error){
		func() (Verdict, error) { return f.Check(r, Token{0, 1}) },
		func() (Verdict, error) { return f.Check(4242, Token{2, 1}) },
		func() (Verdict, error) { return f.CheckKey(nil, Token{2, 1}) },
		func() (Verdict, error) { return f.CheckKey([]byte("r"), Token{1 << 63, 1}) },
		func() (Verdict, error) {
			w, err := f.CheckWrite(r, Token{0, 1}, []byte("x"))
			if w.Accepted {
				return Verdict{Kind: VerdictAccepted}, err
			}
			return w.Fence, err
		},
	} {
		v, err := call()
		if err == nil || v.Accepted() || v != (Verdict{}) {
			t.Errorf("call %d: %+v beside %v", i, v, err)
		}
	}

	b, err := NewBatch([]Item{{r, Token{2, 1}}, {r, Token{3, 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if b.Accepted(0) || b.Kind(1) != VerdictNone {
		t.Error("a batch never checked reads as acceptance")
	}
	if err := f.CheckBatch(b); err != nil || !b.Accepted(0) || !b.Accepted(1) {
		t.Fatalf("batch: %v", err)
	}
	bad, _ := NewBatch([]Item{{r, Token{3, 1}}, {4242, Token{3, 1}}})
	reuse(bad)
	// An id the fence never gave out is a bad item, named by its index.
	if err := f.CheckBatch(bad); !errors.Is(err, ErrInvalidBatch) || !strings.Contains(err.Error(), "item 1: unknown resource id 4242") {
		t.Fatalf("bad batch: %v", err)
	}
	for j := 0; j < bad.Len(); j++ {
		if bad.Accepted(j) || bad.Kind(j) != VerdictNone || bad.Verdict(j) != (Verdict{}) {
			t.Errorf("item %d of a failed batch reads %+v", j, bad.Verdict(j))
		}
	}

	f.Close()
	if err := f.CheckBatch(b); !errors.Is(err, ErrClosed) {
		t.Fatalf("a closed fence checked a batch: %v", err)
	}
	for j := 0; j < b.Len(); j++ {
		if b.Accepted(j) || b.Kind(j) != VerdictNone {
			t.Errorf("item %d still reads %v after ErrClosed", j, b.Kind(j))
		}
	}
	if err := (*Fence)(nil).CheckBatch(bad); !errors.Is(err, ErrClosed) {
		t.Fatalf("a nil fence: %v", err)
	}
	if v, err := f.Check(r, Token{3, 1}); err == nil || v.Accepted() {
		t.Errorf("a closed fence: %+v %v", v, err)
	}
}

func TestOptionsAndDirectoriesThatAreNotAFencesLog(t *testing.T) {
	dir := t.TempDir()
	f, err := OpenWith(filepath.Join(dir, "small"), Options{MaxResources: 2, SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"a", "b"} {
		if _, err := f.Register([]byte(key)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.Register([]byte("c")); !errors.Is(err, ErrTooManyResources) {
		t.Fatalf("a third resource of two: %v", err)
	}
	f.Close()
	if _, err := OpenWith(filepath.Join(dir, "bad"), Options{SegmentSize: 1000}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a segment size of 1000 bytes: %v", err)
	}
	// A new log is made only in an empty directory: one holding someone's files is refused,
	// and they are left alone.
	busy := filepath.Join(dir, "busy")
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(busy, "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(busy); !errors.Is(err, ErrWrongOwner) {
		t.Fatalf("a directory with other files: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(busy, "notes.txt")); err != nil || string(b) != "mine" {
		t.Fatalf("the other file changed: %q %v", b, err)
	}
}

func TestCheckBatchOfNoBatchIsAnError(t *testing.T) {
	f := open(t, t.TempDir())
	defer f.Close()
	if err := f.CheckBatch(nil); !errors.Is(err, ErrNullArgument) {
		t.Fatalf("CheckBatch(nil): %v", err)
	}
}

// A Batch belongs to one goroutine: while a CheckBatch runs on it, another is refused and
// its verdicts read as rejections, never as the running check's (or an earlier one's)
// acceptances.
func TestABatchInUseIsRefusedAndReadsNone(t *testing.T) {
	f := open(t, t.TempDir())
	defer f.Close()
	r, err := f.Register([]byte("r"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBatch([]Item{{Resource: r, Token: Token{Generation: 5, Holder: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CheckBatch(b); err != nil || !b.Accepted(0) {
		t.Fatalf("first check: %v, accepted %v", err, b.Accepted(0))
	}
	b.checking.Store(true) // as while another goroutine's CheckBatch runs
	if err := f.CheckBatch(b); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("a CheckBatch on a batch in use: %v", err)
	}
	if b.Accepted(0) || b.Kind(0) != VerdictNone || b.Verdict(0) != (Verdict{}) {
		t.Fatalf("a batch in use reads %v", b.Kind(0))
	}
	b.checking.Store(false)
	if !b.Accepted(0) {
		t.Fatal("the refused call must not have changed the verdicts")
	}
}
