//! Instances: one per plugin per thread, kept warm between calls and thrown away after a trap
//! (its state may be half-changed), so the next call starts from a fresh one.
//!
//! A call is one budget: one deadline (validators) or one tank of fuel (tie-breakers), armed
//! when the call begins and covering a fresh instance's start function and ABI probes too.
//! A call runs on a stack with room for the wasm stack limit plus the host's margin: on the
//! calling thread when it has that much left (measured once per thread), else on a thread
//! started for it.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::sync::{Arc, OnceLock, Weak};

use wasmtime::{Caller, Engine, Linker, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc};

use crate::abi;
use crate::engine::Kind;
use crate::error::PluginError;
use crate::limits::{
    CALL_STACK_BYTES, FALLBACK_THREAD_STACK_BYTES, LOG_BYTES_PER_CALL, LOG_FUEL_BASE,
    LOG_FUEL_PER_BYTE, LOG_LINE_BYTES, LOG_LINES_PER_CALL,
};
use crate::plugin::{Shared, describe};

/// The store's data: what the limiter and the host log read.
pub(crate) struct Host {
    limits: StoreLimits,
    /// Whether `fencekit.log` is paid for in fuel (tie-breakers; a validator's log calls are
    /// counted by its deadline, which is wall time).
    log_costs_fuel: bool,
    /// What the current call logged.
    log: LogSpent,
}

/// The host log's use by one call. Invariant: `lines <= LOG_LINES_PER_CALL` and
/// `bytes <= LOG_BYTES_PER_CALL`.
#[derive(Default)]
struct LogSpent {
    lines: u32,
    bytes: usize,
    /// Lines not logged because the call had used up its lines or bytes.
    dropped: u64,
}

/// The entry points of one kind of plugin.
pub(crate) enum Entry {
    Validator(TypedFunc<i32, i32>),
    TieBreaker {
        priority: TypedFunc<i32, i64>,
        conflict: TypedFunc<i32, i32>,
    },
}

/// A live instance of a plugin, on one thread.
pub(crate) struct Live {
    pub(crate) store: Store<Host>,
    /// The input buffer: `capacity` bytes inside the instance's memory. Invariant: valid as
    /// long as `store` lives, because the memory never moves (`memory_may_move(false)`) and
    /// never shrinks, and the range was inside it when the instance was made.
    input: std::ptr::NonNull<u8>,
    capacity: usize,
    pub(crate) entry: Entry,
}

// SAFETY: a `Live` is its store plus a pointer into that store's linear memory. The memory
// belongs to the store, not to a thread, and never moves (`memory_may_move(false)`), so the
// pointer stays valid wherever the store goes. The other fields are `Send` (checked below).
// A call on a thread started for its stack (`on_enough_stack`) borrows the calling thread's
// instance there, while the calling thread waits.
unsafe impl Send for Live {}

const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<Store<Host>>();
    is_send::<Entry>();
};

fn export<T: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    instance: &wasmtime::Instance,
    store: &mut Store<Host>,
    shared: &Shared,
    name: &'static str,
) -> Result<TypedFunc<T, R>, PluginError> {
    let problem = match shared.module.get_export(name) {
        None => "missing".to_owned(),
        Some(ty) => match instance.get_typed_func::<T, R>(&mut *store, name) {
            Ok(func) => return Ok(func),
            Err(_) => format!(
                "has type {}; the ABI wants {}",
                describe(&ty),
                std::any::type_name::<fn(T) -> R>()
                    .replace("fn(", "func (")
                    .replace("()", "")
            ),
        },
    };
    Err(PluginError::Export { name, problem })
}

/// Prepares a warm instance for one call: a fresh deadline or a fresh tank of fuel (one store
/// write), and a fresh log allowance for a plugin that logs. A fresh instance was armed when it
/// was made: its start function and ABI probes spend from the same budget as its call.
pub(crate) fn arm(store: &mut Store<Host>, shared: &Shared) {
    match shared.kind {
        Kind::Validator => store.set_epoch_deadline(shared.deadline_ticks),
        Kind::TieBreaker => {
            // Fuel is enabled on the tie-breakers' engine, so this cannot fail.
            let _ = store.set_fuel(shared.limits.fuel);
        }
    }
    if shared.info.imports_log {
        store.data_mut().log = LogSpent::default();
    }
}

/// Ends a call of a plugin that logs: says how many of its lines were dropped, if any.
pub(crate) fn end_call(store: &mut Store<Host>, shared: &Shared) {
    if !shared.info.imports_log {
        return;
    }
    let spent = std::mem::take(&mut store.data_mut().log);
    if spent.dropped > 0 {
        log::debug!(
            "plugin: {} more log lines of this call were dropped (a call may log \
             {LOG_LINES_PER_CALL} lines and {LOG_BYTES_PER_CALL} bytes)",
            spent.dropped
        );
    }
}

/// The linker of plugins of `kind`: the host log, made once (making it per instance was
/// host work inside the call's deadline).
fn linker(kind: Kind, engine: &Engine) -> Result<Cow<'static, Linker<Host>>, PluginError> {
    static LINKERS: [OnceLock<Linker<Host>>; 2] = [OnceLock::new(), OnceLock::new()];
    let cell = &LINKERS[match kind {
        Kind::Validator => 0,
        Kind::TieBreaker => 1,
    }];
    if let Some(linker) = cell.get().filter(|l| Engine::same(l.engine(), engine)) {
        return Ok(Cow::Borrowed(linker));
    }
    let mut linker = Linker::new(engine);
    linker
        .func_wrap(
            abi::IMPORT_LOG.0,
            abi::IMPORT_LOG.1,
            |mut caller: Caller<'_, Host>, ptr: i32, len: i32| log_line(&mut caller, ptr, len),
        )
        .map_err(|e| PluginError::Instantiate(format!("define fencekit.log: {e:#}")))?;
    // Every plugin of a kind shares its kind's engine (engine::engine), so the first linker
    // made is the one kept; another engine (none today) would get its own each time.
    let _ = cell.set(linker.clone());
    Ok(Cow::Owned(linker))
}

impl Live {
    /// Instantiates `shared`'s module and checks it against the ABI, on a stack with room for
    /// it (its start function and probes run wasm). The instance is armed for one call.
    pub(crate) fn new(shared: &Shared) -> Result<Live, PluginError> {
        on_enough_stack(|| Live::create(shared))
            .unwrap_or_else(|why| Err(PluginError::Instantiate(why)))
    }

    /// `new`, on this thread's stack, whatever is left of it.
    pub(crate) fn create(shared: &Shared) -> Result<Live, PluginError> {
        let engine = shared.module.engine();
        let memory_max = match shared.kind {
            Kind::Validator => shared.limits.memory_bytes_max,
            // Fixed memory: see PluginLimits::memory_bytes_max. A tie-breaker gets all of it
            // on every call, so more than the limit is refused (at load: loading makes one).
            Kind::TieBreaker => {
                let declared = shared.info.memory_min_bytes;
                if declared > shared.limits.memory_bytes_max {
                    return Err(PluginError::Instantiate(format!(
                        "the tie-breaker declares {declared} bytes of memory, more than the \
                         limit of {} bytes (PluginLimits::memory_bytes_max); a tie-breaker's \
                         memory is fixed at its declared minimum",
                        shared.limits.memory_bytes_max
                    )));
                }
                declared
            }
        };
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_max)
            .table_elements(shared.limits.table_elements_max)
            .instances(1)
            .memories(1)
            .tables(4)
            .build();
        let host = Host {
            limits,
            log_costs_fuel: shared.kind == Kind::TieBreaker,
            log: LogSpent::default(),
        };
        let mut store = Store::new(engine, host);
        store.limiter(|host| &mut host.limits);
        store.epoch_deadline_trap();
        // The call's one budget, from here to the end of the call.
        arm(&mut store, shared);
        let linker = linker(shared.kind, engine)?;
        let instance = linker
            .instantiate(&mut store, &shared.module)
            .map_err(|e| {
                PluginError::Instantiate(match e.downcast_ref::<Trap>() {
                    Some(_) => format!("its start function {}", trap_reason(&e)),
                    None => format!("{e:#}"),
                })
            })?;
        let memory = instance
            .get_memory(&mut store, abi::EXPORT_MEMORY)
            .ok_or_else(|| PluginError::Export {
                name: abi::EXPORT_MEMORY,
                problem: "missing".into(),
            })?;
        let version: TypedFunc<(), i32> =
            export(&instance, &mut store, shared, abi::EXPORT_ABI_VERSION)?;
        let input: TypedFunc<(), i32> = export(&instance, &mut store, shared, abi::EXPORT_INPUT)?;
        let capacity: TypedFunc<(), i32> =
            export(&instance, &mut store, shared, abi::EXPORT_INPUT_CAPACITY)?;
        let entry = match shared.kind {
            Kind::Validator => {
                Entry::Validator(export(&instance, &mut store, shared, abi::EXPORT_VALIDATE)?)
            }
            Kind::TieBreaker => Entry::TieBreaker {
                priority: export(&instance, &mut store, shared, abi::EXPORT_ELECTION_PRIORITY)?,
                conflict: export(&instance, &mut store, shared, abi::EXPORT_RESOLVE_CONFLICT)?,
            },
        };
        // No arming here: the probes spend from the budget armed above.
        let call = |store: &mut Store<Host>, f: &TypedFunc<(), i32>, name: &'static str| {
            f.call(store, ()).map_err(|e| PluginError::Export {
                name,
                problem: format!("the call {}", trap_reason(&e)),
            })
        };
        let found = call(&mut store, &version, abi::EXPORT_ABI_VERSION)?;
        if found != abi::ABI_VERSION {
            return Err(PluginError::AbiVersion {
                found,
                expected: abi::ABI_VERSION,
            });
        }
        let input = call(&mut store, &input, abi::EXPORT_INPUT)?;
        let capacity = call(&mut store, &capacity, abi::EXPORT_INPUT_CAPACITY)?;
        let size = memory.data_size(&store);
        let minimum = match shared.kind {
            Kind::Validator => abi::VALIDATE_HEADER_LEN,
            Kind::TieBreaker => abi::CONFLICT_HEADER_LEN.max(abi::PRIORITY_HEADER_LEN),
        };
        let (Ok(start), Ok(len)) = (usize::try_from(input), usize::try_from(capacity)) else {
            return Err(PluginError::Buffer(format!(
                "fk_input() = {input}, fk_input_capacity() = {capacity}: negative"
            )));
        };
        if len < minimum || start.checked_add(len).is_none_or(|end| end > size) {
            return Err(PluginError::Buffer(format!(
                "{len} bytes at {start}: it must hold at least {minimum} bytes and lie inside \
                 the memory's {size} bytes"
            )));
        }
        let base = memory.data_ptr(&store);
        // SAFETY: `start + len` is within the memory's size (checked above).
        let input = unsafe { base.add(start) };
        let input = std::ptr::NonNull::new(input)
            .ok_or_else(|| PluginError::Buffer("the memory has no address".into()))?;
        Ok(Live {
            store,
            input,
            capacity: len,
            entry,
        })
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The first `len` bytes of the input buffer, or `None` if `len` exceeds its capacity.
    pub(crate) fn input(&mut self, len: usize) -> Option<&mut [u8]> {
        if len > self.capacity {
            return None;
        }
        // SAFETY: `input` and `capacity` describe live memory of this instance (the field's
        // invariant); no wasm runs while the slice is borrowed (it borrows `self` mutably).
        Some(unsafe { std::slice::from_raw_parts_mut(self.input.as_ptr(), len) })
    }
}

/// Logs a line a plugin wrote through `fencekit.log`, within the call's allowance (later lines
/// are dropped and counted); a bad range is ignored. A tie-breaker pays for it in fuel, logged
/// or not, so that every replica spends alike whatever its logger.
fn log_line(caller: &mut Caller<'_, Host>, ptr: i32, len: i32) -> wasmtime::Result<()> {
    let wanted = usize::try_from(len).unwrap_or(0).min(LOG_LINE_BYTES);
    if caller.data().log_costs_fuel {
        // `wanted` is at most LOG_LINE_BYTES, so this cannot overflow.
        let cost = LOG_FUEL_BASE + wanted as u64 * LOG_FUEL_PER_BYTE;
        let left = caller.get_fuel()?;
        if left < cost {
            caller.set_fuel(0)?;
            return Err(Trap::OutOfFuel.into());
        }
        caller.set_fuel(left - cost)?;
    }
    let spent = &mut caller.data_mut().log;
    let room = LOG_BYTES_PER_CALL - spent.bytes;
    if spent.lines >= LOG_LINES_PER_CALL || room == 0 {
        spent.dropped += 1;
        return Ok(());
    }
    let take = wanted.min(room);
    let Some(memory) = caller
        .get_export(abi::EXPORT_MEMORY)
        .and_then(|e| e.into_memory())
    else {
        return Ok(());
    };
    let Ok(start) = usize::try_from(ptr) else {
        return Ok(());
    };
    let Some(bytes) = start
        .checked_add(take)
        .and_then(|end| memory.data(&caller).get(start..end))
    else {
        return Ok(());
    };
    // Control characters escaped: a plugin writes no terminal escape sequence, NUL or fake
    // line into the host's log.
    let line: String = String::from_utf8_lossy(bytes)
        .chars()
        .flat_map(|c| {
            // Bidi overrides and isolates, zero-width and line/paragraph separators too: they
            // can make a line read as something else, or as two.
            let invisible = matches!(
                c,
                '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
            );
            let escaped: Vec<char> = if c.is_control() || invisible {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    log::debug!("plugin: {line}");
    let spent = &mut caller.data_mut().log;
    spent.lines += 1;
    spent.bytes += take;
    Ok(())
}

/// Why a call failed, as the end of a sentence whose subject is the plugin ("the plugin ran
/// out of fuel"): the trap's name when it is one, never wasmtime's backtrace.
pub(crate) fn trap_reason(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "ran past its deadline".into(),
        Some(Trap::OutOfFuel) => "ran out of fuel".into(),
        Some(Trap::StackOverflow) => "overflowed its stack".into(),
        Some(trap) => {
            let trap = trap.to_string();
            format!("trapped ({})", trap.trim_start_matches("wasm trap: "))
        }
        None => format!("failed: {}", error.root_cause()),
    }
}

/// True when `error` is the deadline's interrupt.
pub(crate) fn is_deadline(error: &wasmtime::Error) -> bool {
    matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt))
}

/// One thread's instance of one plugin, shared between that thread's list and the plugin's
/// [`Slots`], so that freeing the plugin frees it at once, whichever thread made it.
///
/// Protocol (why the cell needs no lock): the owning thread touches `live` only while it
/// holds a strong reference to the plugin (a call); [`Slots`] touches it only when the plugin
/// is being dropped, when no strong reference is left, so no call is in progress and none can
/// start (`Weak::upgrade` fails from then on). The plugin's reference count orders the two
/// (its last decrement releases what the last call did; the drop acquires it).
pub(crate) struct Slot {
    live: std::cell::UnsafeCell<Option<Live>>,
}

// SAFETY: `Live` is `Send`; the protocol above keeps the cell's accesses from two threads
// apart in time, ordered by the plugin's reference count.
unsafe impl Sync for Slot {}

/// Every instance of one plugin, on every thread: emptied when the plugin is dropped.
#[derive(Default)]
pub(crate) struct Slots(std::sync::Mutex<Vec<Weak<Slot>>>);

impl Slots {
    fn add(&self, slot: &Arc<Slot>) {
        let mut slots = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Slots whose threads dropped them (a trap, the thread's end) go now.
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(slot));
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let slots = self.0.get_mut().unwrap_or_else(|p| p.into_inner());
        for slot in slots.drain(..).filter_map(|s| s.upgrade()) {
            // SAFETY: the plugin is being dropped: no call holds it (the protocol of `Slot`).
            let live = unsafe { (*slot.live.get()).take() };
            drop(live);
        }
    }
}

struct Kept {
    id: u64,
    owner: Weak<Shared>,
    slot: Arc<Slot>,
}

impl Kept {
    fn new(shared: &Arc<Shared>, live: Live) -> Kept {
        let slot = Arc::new(Slot {
            live: std::cell::UnsafeCell::new(Some(live)),
        });
        shared.slots.add(&slot);
        Kept {
            id: shared.id,
            owner: Arc::downgrade(shared),
            slot,
        }
    }
}

thread_local! {
    /// This thread's instances, few (one per plugin it called): a vector beats a map here.
    static LIVE: RefCell<Vec<Kept>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `live` as this thread's instance of `shared`.
pub(crate) fn keep(shared: &Arc<Shared>, live: Live) {
    let _ = LIVE.try_with(|kept| {
        let mut kept = kept.borrow_mut();
        // Instances of plugins dropped since are freed here, when a new one is kept.
        kept.retain(|k| k.id != shared.id && k.owner.strong_count() > 0);
        kept.push(Kept::new(shared, live));
    });
}

/// Runs `call` on this thread's instance of `shared`, creating it if needed, within one
/// budget (a warm instance is armed here; a fresh one was armed when made), on a stack with
/// room for it. `call` says whether the instance may be kept (false after a trap: its state
/// may be half-changed).
pub(crate) fn with_live<T: Send>(
    shared: &Arc<Shared>,
    call: impl FnOnce(&mut Live) -> (T, bool) + Send,
    failed: impl FnOnce(String) -> T,
) -> T {
    let outcome = LIVE.try_with(|kept| {
        // The borrow spans the call: a plugin cannot call back into another plugin (its one
        // import, the log, does not), so nothing else borrows this thread's instances.
        let mut kept = kept.borrow_mut();
        if let Some(at) = kept.iter().position(|k| k.id == shared.id)
            // SAFETY: a call, holding `shared` (the protocol of `Slot`); the thread's list is
            // borrowed mutably, so no other access to this slot is in progress on it. The
            // instance is never gone while `shared` lives.
            && let Some(live) = unsafe { (*kept[at].slot.live.get()).as_mut() }
        {
            arm(&mut live.store, shared);
            let (answer, keep_it) = on_enough_stack(|| {
                let outcome = call(&mut *live);
                end_call(&mut live.store, shared);
                outcome
            })?;
            if !keep_it {
                kept.swap_remove(at);
            }
            return Ok(answer);
        }
        let (answer, live) = on_enough_stack(|| {
            let mut live = match Live::create(shared) {
                Ok(live) => live,
                Err(PluginError::Instantiate(why)) => return Err(why),
                Err(e) => return Err(e.to_string()),
            };
            let (answer, keep_it) = call(&mut live);
            end_call(&mut live.store, shared);
            Ok((answer, keep_it.then_some(live)))
        })??;
        if let Some(live) = live {
            kept.retain(|k| k.id != shared.id && k.owner.strong_count() > 0);
            kept.push(Kept::new(shared, live));
        }
        Ok(answer)
    });
    match outcome {
        Ok(Ok(answer)) => answer,
        Ok(Err(why)) => failed(why),
        // The thread is exiting and its instances are gone.
        Err(_) => failed("the calling thread is shutting down".into()),
    }
}

/// What this thread knows of its stack.
#[derive(Clone, Copy)]
enum Stack {
    /// Not yet asked.
    Unmeasured,
    /// Its lowest usable address and its top.
    Known { low: usize, high: usize },
    /// The platform would not say: every call runs on a thread started for it.
    Unknown,
    /// A thread started for a call, with room for it by construction.
    Roomy,
}

thread_local! {
    /// This thread's stack, measured on its first call: a warm call reads it and compares,
    /// no syscall.
    static STACK: Cell<Stack> = const { Cell::new(Stack::Unmeasured) };
}

/// Runs `run` on this thread when it has `CALL_STACK_BYTES` of stack left, else on a thread
/// started for it with `FALLBACK_THREAD_STACK_BYTES` (a thread's stack cannot grow, and wasm
/// recursion up to the engine's limit plus the host's frames would run off its end and crash
/// the process). `Err` says why `run` could not run.
pub(crate) fn on_enough_stack<R: Send>(run: impl FnOnce() -> R + Send) -> Result<R, String> {
    let left = stack_left();
    if left.is_some_and(|left| left >= CALL_STACK_BYTES) {
        return Ok(run());
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("fencekit-plugin-call".into())
            .stack_size(FALLBACK_THREAD_STACK_BYTES)
            .spawn_scoped(scope, || {
                STACK.set(Stack::Roomy);
                run()
            })
            .map_err(|e| {
                let left =
                    left.map_or_else(|| "an unknown amount".into(), |n| format!("{n} bytes"));
                format!(
                    "the calling thread has {left} of stack left, less than the \
                     {CALL_STACK_BYTES} bytes a plugin call needs, and a thread with enough \
                     could not be started: {e}"
                )
            })?;
        match thread.join() {
            Ok(answer) => Ok(answer),
            // As if it had run here.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// How many bytes of stack this thread has left below this function's frame, or `None` when
/// unknown (a platform that does not say, or a stack that is not the thread's own, such as a
/// coroutine's).
#[inline]
fn stack_left() -> Option<usize> {
    let marker = 0u8;
    let here = std::ptr::addr_of!(marker) as usize;
    let stack = match STACK.try_with(Cell::get) {
        Ok(Stack::Unmeasured) => {
            let stack = measure_stack();
            let _ = STACK.try_with(|cell| cell.set(stack));
            stack
        }
        Ok(stack) => stack,
        Err(_) => Stack::Unknown,
    };
    match stack {
        Stack::Known { low, high } if (low..high).contains(&here) => Some(here - low),
        Stack::Roomy => Some(usize::MAX),
        _ => None,
    }
}

/// This thread's stack, from the C library: its lowest usable address (above the guard page)
/// and its top.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn measure_stack() -> Stack {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read, and destroyed
    // once, only when it was initialised; the out-pointers point to live locals.
    unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return Stack::Unknown;
        }
        let mut low = std::ptr::null_mut();
        let mut size = 0;
        let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut low, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        let low = low as usize;
        match (got, low.checked_add(size)) {
            (0, Some(high)) if size > 0 => Stack::Known { low, high },
            _ => Stack::Unknown,
        }
    }
}

/// Elsewhere the stack is unknown, and every call runs on a thread started for it.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn measure_stack() -> Stack {
    Stack::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_thread_measures_its_stack_once() {
        let left = stack_left().unwrap();
        assert!(left > CALL_STACK_BYTES, "a test thread has 2 MiB: {left}");
        assert!(matches!(STACK.get(), Stack::Known { .. }));
        let small = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(|| stack_left().unwrap())
            .unwrap()
            .join()
            .unwrap();
        assert!(small < 64 << 10, "{small}");
        let ran = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(|| on_enough_stack(|| std::thread::current().name().map(String::from)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(ran.unwrap().as_deref(), Some("fencekit-plugin-call"));
    }
}
