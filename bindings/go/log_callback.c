// The log callback libfencekit calls (fk_log_callback), in C: it marks its thread as inside
// the callback, so that SetLogger called from the handler is refused instead of waiting for
// itself, and hands the record to Go.
#include "_cgo_export.h"

static __thread int in_log_callback;

void fkgo_log_callback(void *context, fk_log_level level, const char *target, const char *message) {
	(void)context;
	in_log_callback = 1;
	fkgoLogRecord(level, (char *)target, (char *)message);
	in_log_callback = 0;
}

int fkgo_in_log_callback(void) { return in_log_callback; }
