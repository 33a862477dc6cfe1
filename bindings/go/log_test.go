package fencekit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// capture is a slog handler that keeps the records it is given.
type capture struct {
	level slog.Level
	// onRecord, if set, runs in Handle, on the thread that logs.
	onRecord func(slog.Record)
	mu       sync.Mutex
	records  []slog.Record
}

func (c *capture) Enabled(_ context.Context, l slog.Level) bool { return l >= c.level }
func (c *capture) WithAttrs([]slog.Attr) slog.Handler           { return c }
func (c *capture) WithGroup(string) slog.Handler                { return c }

func (c *capture) Handle(_ context.Context, r slog.Record) error {
	if c.onRecord != nil {
		c.onRecord(r)
	}
	c.mu.Lock()
	c.records = append(c.records, r)
	c.mu.Unlock()
	return nil
}

// find returns the first record at level whose message holds text, and how many records came.
func (c *capture) find(level slog.Level, text string) (*slog.Record, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.records {
		if c.records[i].Level == level && strings.Contains(c.records[i].Message, text) {
			return &c.records[i], len(c.records)
		}
	}
	return nil, len(c.records)
}

// await waits up to d for a record at level whose message holds text.
func (c *capture) await(t *testing.T, d time.Duration, level slog.Level, text string) slog.Record {
	t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(10 * time.Millisecond) {
		if r, _ := c.find(level, text); r != nil {
			return *r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %v record holding %q within %v", level, text, d)
		}
	}
}

func attr(r slog.Record, key string) string {
	var value string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			value = a.Value.String()
		}
		return true
	})
	return value
}

// setLoggerForTest sets l and turns logging off again when the test ends.
func setLoggerForTest(t *testing.T, l *slog.Logger) {
	t.Helper()
	if err := SetLogger(l); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := SetLogger(nil); err != nil {
			t.Error(err)
		}
	})
}

// A peer address with a typo (127.0.0.l) is a warning from the kernel's transport thread,
// delivered to the slog handler with its target; the retries that follow are debug records;
// after SetLogger(nil) nothing more arrives, though the node keeps retrying.
func TestKernelWarningsReachTheSlogHandler(t *testing.T) {
	h := &capture{level: slog.LevelDebug}
	setLoggerForTest(t, slog.New(h))
	root := t.TempDir()
	certs := filepath.Join(root, "certs")
	if err := MakeDevCerts(certs, 7, []uint64{1, 2}); err != nil {
		t.Fatal(err)
	}
	n := start(t, Config{ID: 1, Cluster: 7, DataDir: filepath.Join(root, "node-1"), Listen: freeAddr(t),
		Peers: []Peer{{ID: 2, Addr: "127.0.0.l:7001"}},
		TLS:   &TLSConfig{Dir: DevCertDir(certs, 1)}})

	warning := h.await(t, 10*time.Second, slog.LevelWarn, "127.0.0.l")
	if target := attr(warning, "target"); !strings.HasPrefix(target, "fencekit") {
		t.Errorf("the warning's target is %q: %s", target, warning.Message)
	}
	if warning.PC != 0 {
		t.Errorf("the kernel's record claims a Go source position")
	}
	h.await(t, 10*time.Second, slog.LevelDebug, "127.0.0.l")

	if err := SetLogger(nil); err != nil {
		t.Fatal(err)
	}
	_, before := h.find(slog.LevelWarn, "")
	time.Sleep(300 * time.Millisecond)
	if _, after := h.find(slog.LevelWarn, ""); after != before {
		t.Errorf("%d records after SetLogger(nil) returned", after-before)
	}
	n.Close()
}

// conflictAnswer7 is a tie-breaker that answers 7 to every conflict, which the plugin ABI does
// not allow: the library rejects the write and logs a warning, on the thread that checks.
const conflictAnswer7 = `(module
  (memory (export "memory") 1)
  (func (export "fk_abi_version") (result i32) (i32.const 1))
  (func (export "fk_input") (result i32) (i32.const 1024))
  (func (export "fk_input_capacity") (result i32) (i32.const 1024))
  (func (export "fk_election_priority") (param $len i32) (result i64) (i64.const 1))
  (func (export "fk_resolve_conflict") (param $len i32) (result i32) (i32.const 7)))`

// A record logged during a check, on the calling goroutine's own thread, reaches the
// handler (the hot check must allow callbacks into Go: with cgo's "nocallback" this would be
// a fatal error); and a handler that calls SetLogger is refused, not deadlocked.
func TestARecordLoggedDuringACheckReachesTheHandler(t *testing.T) {
	var mu sync.Mutex
	var inside []error
	h := &capture{level: slog.LevelWarn}
	h.onRecord = func(slog.Record) {
		err := SetLogger(nil)
		mu.Lock()
		inside = append(inside, err)
		mu.Unlock()
	}
	setLoggerForTest(t, slog.New(h))
	f := open(t, t.TempDir())
	defer f.Close()
	tb, err := LoadWasm([]byte(conflictAnswer7), PolicyTieBreaker)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if err := f.SetTieBreaker(tb); err != nil {
		t.Fatal(err)
	}
	r, _ := f.Register([]byte("shard-7"))
	f.Check(r, Token{5, 3})
	if v, err := f.Check(r, Token{5, 2}); err != nil || v.Accepted() {
		t.Fatalf("a conflict the tie-breaker answered wrongly: %+v %v", v, err)
	}
	h.await(t, time.Second, slog.LevelWarn, "answered 7")
	b, err := NewBatch([]Item{{r, Token{5, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.CheckBatch(b); err != nil || b.Accepted(0) {
		t.Fatalf("the batch: %v %v", b.Verdict(0), err)
	}
	if _, n := h.find(slog.LevelWarn, ""); n < 2 {
		t.Errorf("%d records for two checks that logged", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(inside) == 0 {
		t.Fatal("the handler did not run")
	}
	for _, err := range inside {
		if !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("SetLogger from inside the handler: %v", err)
		}
	}
}

// Each kernel level has its slog level, and the library is asked only for the levels the
// handler is enabled for.
func TestLogLevelsMapToSlog(t *testing.T) {
	const off, errorLevel, warn, info, debug, trace = 0, 1, 2, 3, 4, 5
	for _, c := range []struct {
		handler slog.Level
		max     uint32
	}{
		{LevelTrace, trace}, {slog.LevelDebug, debug}, {slog.LevelInfo, info},
		{slog.LevelWarn, warn}, {slog.LevelError, errorLevel}, {slog.LevelError + 1, off},
	} {
		if got := uint32(maxLevel(&capture{level: c.handler})); got != c.max {
			t.Errorf("a handler at %v: the library's level %d, want %d", c.handler, got, c.max)
		}
	}
	want := map[uint32]slog.Level{errorLevel: slog.LevelError, warn: slog.LevelWarn, info: slog.LevelInfo,
		debug: slog.LevelDebug, trace: LevelTrace}
	for _, l := range kernelLevels {
		if got := slogLevel(l.kernel); got != want[uint32(l.kernel)] {
			t.Errorf("kernel level %d is %v, want %v", l.kernel, got, want[uint32(l.kernel)])
		}
	}
	if fmt.Sprint(LevelTrace) != "DEBUG-4" {
		t.Errorf("LevelTrace is %v", LevelTrace)
	}
}
