package fencekit

/*
#include <fencekit.h>

// In log_callback.c: the callback handed to the library, and whether this thread is in it.
void fkgo_log_callback(void *context, fk_log_level level, const char *target, const char *message);
int fkgo_in_log_callback(void);
*/
import "C"

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// LevelTrace is the slog level of the kernel's trace records, below slog.LevelDebug.
const LevelTrace = slog.LevelDebug - 4

// logger is where the kernel's records go: nil for nowhere, followDefault for whatever
// slog.Default() is when a record comes. The callback reads it on the kernel's threads.
var logger atomic.Pointer[slog.Logger]

// followDefault marks "slog.Default(), looked up per record"; it is never logged to.
var followDefault = new(slog.Logger)

var (
	// setMu orders SetLogger calls, so that the library's level and logger agree. The
	// callback never takes it, and SetLogger from inside the callback is refused before it.
	setMu sync.Mutex
	// loggerSet says SetLogger was called: the default is then never installed. Under setMu.
	loggerSet     bool
	defaultLogger sync.Once
)

// SetLogger sends the kernel's log records (a peer refused for its certificate, an
// unreachable or unresolvable peer, an insecure group, a failed node: what an operator should
// see) to l, as records with the attribute "target" (the kernel's module, such as
// "fencekit::transport::tcp") at slog's levels: error, warn, info and debug as they are, and
// trace at LevelTrace. nil turns them off. Without a call, they go to slog.Default(), looked up
// at each record, from the first Open, Start or LoadWasm on.
//
// The library formats only the records l's handler is enabled for when SetLogger is called
// (a handler whose level rises later drops the rest; one whose level falls needs SetLogger
// again). The setting is the process's. When SetLogger returns, the previous logger is not
// being called and will not be again.
//
// The handler runs on the kernel's threads, several at once, and the kernel thread waits for
// it: it must not block, nor wait for a fencekit call (which may be waiting for that thread).
// SetLogger from inside the handler is refused with ErrInvalidArgument (it would wait for
// itself). A handler that panics loses that record; the panic goes no further.
func SetLogger(l *slog.Logger) error {
	if C.fkgo_in_log_callback() != 0 {
		return &Error{Status: C.FK_STATUS_INVALID_ARGUMENT,
			Message: "SetLogger was called from inside a log handler: it would wait for itself"}
	}
	return setLogger(l, l, true)
}

// useDefaultLogger installs slog.Default() as the logger unless SetLogger came first: called
// before the first call that can log.
func useDefaultLogger() {
	defaultLogger.Do(func() {
		_ = setLogger(followDefault, slog.Default(), false)
	})
}

// setLogger makes l the logger; levels is the logger whose handler says which levels the
// library formats. The default (explicit false) never replaces a logger SetLogger set.
func setLogger(l, levels *slog.Logger, explicit bool) error {
	setMu.Lock()
	defer setMu.Unlock()
	if !explicit && loggerSet {
		return nil
	}
	var callback C.fk_log_callback
	max := C.fk_log_level(C.FK_LOG_OFF)
	if l != nil {
		callback = C.fk_log_callback(C.fkgo_log_callback)
		max = maxLevel(levels.Handler())
	}
	// The logger first: the records the new level lets through find it. Until the library's
	// level is set, the old level's records go to l, which filters them itself.
	previous := logger.Swap(l)
	if err := call(func() C.fk_status { return C.fk_set_log_callback(callback, nil, max) }); err != nil {
		logger.Store(previous)
		return err
	}
	loggerSet = loggerSet || explicit
	return nil
}

// kernelLevels are the library's levels, from the least to the most verbose, with slog's.
var kernelLevels = []struct {
	kernel C.fk_log_level
	slog   slog.Level
}{
	{C.FK_LOG_ERROR, slog.LevelError},
	{C.FK_LOG_WARN, slog.LevelWarn},
	{C.FK_LOG_INFO, slog.LevelInfo},
	{C.FK_LOG_DEBUG, slog.LevelDebug},
	{C.FK_LOG_TRACE, LevelTrace},
}

// maxLevel is the library's most verbose level that h is enabled for (FK_LOG_OFF for none).
func maxLevel(h slog.Handler) C.fk_log_level {
	max := C.fk_log_level(C.FK_LOG_OFF)
	for _, l := range kernelLevels {
		if h.Enabled(context.Background(), l.slog) {
			max = l.kernel
		}
	}
	return max
}

// slogLevel is the slog level of a kernel record's level.
func slogLevel(level C.fk_log_level) slog.Level {
	for _, l := range kernelLevels {
		if l.kernel == level {
			return l.slog
		}
	}
	// Not a level of this ABI: shown, as an error rather than lost.
	return slog.LevelError
}

//export fkgoLogRecord
func fkgoLogRecord(level C.fk_log_level, target, message *C.char) {
	l := logger.Load()
	if l == followDefault {
		l = slog.Default()
	}
	if l == nil {
		return
	}
	// A panic must not unwind into the library's thread (it would abort the process).
	defer func() { _ = recover() }()
	ctx := context.Background()
	h, lv := l.Handler(), slogLevel(level)
	if !h.Enabled(ctx, lv) {
		return
	}
	// No source position: the record comes from the kernel, not from this function.
	r := slog.NewRecord(time.Now(), lv, C.GoString(message), 0)
	r.AddAttrs(slog.String("target", C.GoString(target)))
	_ = h.Handle(ctx, r)
}
