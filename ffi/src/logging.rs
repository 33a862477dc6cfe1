//! `fk_set_log_callback`: the kernel's log records (a refused peer, an unreachable one, a
//! failed node), handed to the host's logging (Go's `log/slog`, Python's `logging`, syslog).
//!
//! The kernel logs through the `log` crate. This library is its own copy of that crate, so the
//! logger installed here serves only fencekit, whatever else the process runs. Until a
//! callback is set nothing is formatted: the maximum level stays off and every `log!` is one
//! relaxed load.

use std::cell::Cell;
use std::ffi::{CString, c_char, c_void};
use std::sync::{Once, PoisonError, RwLock};

use crate::boundary::{Failure, without_handle};
use crate::status::*;

/// A log record's level: a `uint32_t` with the `FK_LOG_*` values, from the most to the least
/// severe. As a maximum level, it passes records of that level and the more severe ones.
pub type fk_log_level = u32;
/// No records (as a maximum level: logging off).
pub const FK_LOG_OFF: fk_log_level = 0;
/// The node failed, or the kernel lost something it needed.
pub const FK_LOG_ERROR: fk_log_level = 1;
/// Something an operator should look at: a refused or unreachable peer, an insecure group.
pub const FK_LOG_WARN: fk_log_level = 2;
/// A milestone: a peer connected.
pub const FK_LOG_INFO: fk_log_level = 3;
/// Detail for debugging: every failed dial, every refusal.
pub const FK_LOG_DEBUG: fk_log_level = 4;
/// More detail than debugging usually needs.
pub const FK_LOG_TRACE: fk_log_level = 5;

/// Receives one log record. `level` is one of `FK_LOG_ERROR` to `FK_LOG_TRACE`; `target` (the
/// kernel's module, such as "fencekit::transport::tcp") and `message` are NUL-terminated UTF-8,
/// valid only during the call. `context` is what `fk_set_log_callback` was given.
///
/// It is called on any thread, the kernel's own included, and on several at once. It must
/// return promptly and must not wait for a fencekit call to finish: the kernel thread that
/// logs is the one such a call may be waiting for. A record the callback logs through
/// fencekit itself (a nested record) is dropped.
pub type fk_log_callback = Option<
    unsafe extern "C" fn(
        context: *mut c_void,
        level: fk_log_level,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// The callback and its context. The context is the host's pointer, only handed back.
struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, fk_log_level, *const c_char, *const c_char),
    context: *mut c_void,
}

// SAFETY: the context is the host's, handed back unread; the contract of
// `fk_set_log_callback` says the callback may be called on any thread with it.
unsafe impl Send for Sink {}
// SAFETY: as above: the library never dereferences the context.
unsafe impl Sync for Sink {}

/// Readers are records being delivered; `fk_set_log_callback` takes it for writing, so that
/// when it returns no call of the previous callback is still running.
static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INSTALL: Once = Once::new();

thread_local! {
    /// Set while this thread runs the callback: a record logged then is dropped, and a
    /// `fk_set_log_callback` from inside the callback is refused (it would wait for itself).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

struct Forwarder;

impl log::Log for Forwarder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) || IN_CALLBACK.with(Cell::get) {
            return;
        }
        let sink = SINK.read().unwrap_or_else(PoisonError::into_inner);
        let Some(sink) = sink.as_ref() else { return };
        let target = c_text(record.target());
        let message = c_text(&record.args().to_string());
        IN_CALLBACK.with(|c| c.set(true));
        // SAFETY: the host's callback, called with its context and two NUL-terminated strings
        // that live until it returns (the contract of fk_log_callback).
        unsafe {
            (sink.callback)(
                sink.context,
                record.level() as fk_log_level,
                target.as_ptr(),
                message.as_ptr(),
            )
        };
        IN_CALLBACK.with(|c| c.set(false));
    }

    fn flush(&self) {}
}

/// `text` as a C string; an interior NUL (a peer's name can hold one) is written `\0`.
fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', "\\0")).unwrap_or_default()
}

fn level_filter(level: fk_log_level) -> Result<log::LevelFilter, Failure> {
    Ok(match level {
        FK_LOG_OFF => log::LevelFilter::Off,
        FK_LOG_ERROR => log::LevelFilter::Error,
        FK_LOG_WARN => log::LevelFilter::Warn,
        FK_LOG_INFO => log::LevelFilter::Info,
        FK_LOG_DEBUG => log::LevelFilter::Debug,
        FK_LOG_TRACE => log::LevelFilter::Trace,
        other => {
            return Err(Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                format!("`max_level` is {other}: it must be FK_LOG_OFF (0) to FK_LOG_TRACE (5)"),
            ));
        }
    })
}

/// Sends the kernel's log records of level `max_level` and more severe to `callback`, with
/// `context`, in place of the previous callback; a NULL `callback` or `FK_LOG_OFF` turns
/// logging off (the default). The setting is the process's, shared by every fence and node.
///
/// When it returns, the previous callback is not running on any thread and is not called
/// again, so its context may be freed. Fails with `FK_STATUS_INVALID_ARGUMENT` for a level
/// above `FK_LOG_TRACE`, or when called from inside a log callback.
///
/// Thread safety: any thread; calls are serialised.
///
/// # Safety
///
/// `callback` is NULL or a function that may be called as `fk_log_callback` says, with
/// `context`, until this function is next called.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_set_log_callback(
    callback: fk_log_callback,
    context: *mut c_void,
    max_level: fk_log_level,
) -> fk_status {
    without_handle(|| {
        let filter = level_filter(max_level)?;
        if IN_CALLBACK.with(Cell::get) {
            return Err(Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                "fk_set_log_callback was called from inside a log callback; it would wait for \
                 that callback to return",
            ));
        }
        let mut installed = Ok(());
        INSTALL.call_once(|| installed = log::set_logger(&Forwarder));
        installed.map_err(|e| {
            Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                format!("another logger owns this library's log records: {e}"),
            )
        })?;
        let mut sink = SINK.write().unwrap_or_else(PoisonError::into_inner);
        *sink = callback.map(|callback| Sink { callback, context });
        let filter = if sink.is_some() {
            filter
        } else {
            log::LevelFilter::Off
        };
        log::set_max_level(filter);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// The tests share the process's one logger: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    type Records = Mutex<Vec<(fk_log_level, String, String)>>;

    unsafe extern "C" fn collect(
        context: *mut c_void,
        level: fk_log_level,
        target: *const c_char,
        message: *const c_char,
    ) {
        // SAFETY: the tests pass a live `Records` and the ABI two C strings.
        let (records, target, message) = unsafe {
            (
                &*(context as *const Records),
                std::ffi::CStr::from_ptr(target),
                std::ffi::CStr::from_ptr(message),
            )
        };
        records.lock().unwrap().push((
            level,
            target.to_str().unwrap().to_owned(),
            message.to_str().unwrap().to_owned(),
        ));
        // A nested record must be dropped, not recurse.
        log::error!("logged from inside the callback");
    }

    fn set(records: Option<&Records>, level: fk_log_level) -> fk_status {
        let (callback, context): (fk_log_callback, _) = match records {
            Some(r) => (Some(collect), r as *const Records as *mut c_void),
            None => (None, std::ptr::null_mut()),
        };
        // SAFETY: `collect` with a `Records` that outlives the callback's setting.
        unsafe { fk_set_log_callback(callback, context, level) }
    }

    #[test]
    fn records_reach_the_callback_up_to_the_maximum_level() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let records = Records::default();
        assert_eq!(set(Some(&records), FK_LOG_WARN), FK_STATUS_OK);
        log::warn!(target: "fencekit::test", "peer 3 refused: {}", "wrong cluster\0x");
        log::info!(target: "fencekit::test", "below the maximum");
        assert_eq!(set(None, FK_LOG_WARN), FK_STATUS_OK);
        log::error!("after the callback was removed");
        assert_eq!(
            *records.lock().unwrap(),
            vec![(
                FK_LOG_WARN,
                "fencekit::test".to_owned(),
                "peer 3 refused: wrong cluster\\0x".to_owned()
            )]
        );
    }

    #[test]
    fn a_level_above_trace_is_refused_and_changes_nothing() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let records = Records::default();
        assert_eq!(set(Some(&records), FK_LOG_ERROR), FK_STATUS_OK);
        assert_eq!(set(None, 6), FK_STATUS_INVALID_ARGUMENT);
        log::error!("still delivered");
        assert_eq!(set(None, FK_LOG_OFF), FK_STATUS_OK);
        assert_eq!(records.lock().unwrap().len(), 1);
    }

    static REENTRANT_STATUS: AtomicUsize = AtomicUsize::new(usize::MAX);

    unsafe extern "C" fn resets(
        _: *mut c_void,
        _: fk_log_level,
        _: *const c_char,
        _: *const c_char,
    ) {
        // SAFETY: a NULL callback.
        let status = unsafe { fk_set_log_callback(None, std::ptr::null_mut(), FK_LOG_OFF) };
        REENTRANT_STATUS.store(status as usize, Ordering::SeqCst);
    }

    #[test]
    fn setting_the_callback_from_inside_it_is_refused_not_a_deadlock() {
        let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        // SAFETY: `resets` takes no context.
        let status = unsafe { fk_set_log_callback(Some(resets), std::ptr::null_mut(), 5) };
        assert_eq!(status, FK_STATUS_OK);
        log::warn!("calls fk_set_log_callback");
        assert_eq!(
            REENTRANT_STATUS.load(Ordering::SeqCst),
            FK_STATUS_INVALID_ARGUMENT as usize
        );
        assert_eq!(set(None, FK_LOG_OFF), FK_STATUS_OK);
    }
}
