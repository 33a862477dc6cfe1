//! Instances: one per plugin per thread, kept warm between calls and thrown away after a trap
//! (its state may be half-changed), so the next call starts from a fresh one.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use wasmtime::{Caller, Linker, Store, StoreLimits, StoreLimitsBuilder, Trap, TypedFunc};

use crate::abi;
use crate::engine::Kind;
use crate::error::PluginError;
use crate::plugin::{Shared, describe};

/// The store's data: what the limiter reads.
pub(crate) struct Host {
    limits: StoreLimits,
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

/// Prepares `store` for one call: a fresh deadline or a fresh tank of fuel.
pub(crate) fn arm(store: &mut Store<Host>, shared: &Shared) {
    match shared.kind {
        Kind::Validator => store.set_epoch_deadline(shared.deadline_ticks),
        Kind::TieBreaker => {
            // Fuel is enabled on the tie-breakers' engine, so this cannot fail.
            let _ = store.set_fuel(shared.limits.fuel);
        }
    }
}

impl Live {
    /// Instantiates `shared`'s module and checks it against the ABI.
    pub(crate) fn new(shared: &Shared) -> Result<Live, PluginError> {
        let engine = shared.module.engine();
        let memory_max = match shared.kind {
            Kind::Validator => shared.limits.memory_bytes_max,
            // Fixed memory: see PluginLimits::memory_bytes_max.
            Kind::TieBreaker => shared.info.memory_min_bytes,
        };
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_max)
            .table_elements(shared.limits.table_elements_max)
            .instances(1)
            .memories(1)
            .tables(4)
            .build();
        let mut store = Store::new(engine, Host { limits });
        store.limiter(|host| &mut host.limits);
        store.epoch_deadline_trap();
        arm(&mut store, shared);
        let mut linker = Linker::new(engine);
        if shared.info.imports_log {
            linker
                .func_wrap(
                    abi::IMPORT_LOG.0,
                    abi::IMPORT_LOG.1,
                    |mut caller: Caller<'_, Host>, ptr: i32, len: i32| {
                        log_line(&mut caller, ptr, len)
                    },
                )
                .map_err(|e| PluginError::Instantiate(format!("{e:#}")))?;
        }
        let instance = linker
            .instantiate(&mut store, &shared.module)
            .map_err(|e| PluginError::Instantiate(format!("{e:#}")))?;
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
        let call = |store: &mut Store<Host>, f: &TypedFunc<(), i32>, name: &'static str| {
            arm(store, shared);
            f.call(store, ()).map_err(|e| PluginError::Export {
                name,
                problem: format!("trapped: {}", trap_reason(&e)),
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

/// Logs a line a plugin wrote through `fencekit.log`; a bad range is ignored.
fn log_line(caller: &mut Caller<'_, Host>, ptr: i32, len: i32) {
    let Some(memory) = caller
        .get_export(abi::EXPORT_MEMORY)
        .and_then(|e| e.into_memory())
    else {
        return;
    };
    let (Ok(start), Ok(len)) = (usize::try_from(ptr), usize::try_from(len)) else {
        return;
    };
    let data = memory.data(&caller);
    if let Some(bytes) = start
        .checked_add(len.min(1024))
        .and_then(|end| data.get(start..end))
    {
        log::debug!("plugin: {}", String::from_utf8_lossy(bytes));
    }
}

/// Why a call failed, for a rejection's reason: the trap's name when it is one.
pub(crate) fn trap_reason(error: &wasmtime::Error) -> String {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => "ran past its deadline".into(),
        Some(Trap::OutOfFuel) => "ran out of fuel".into(),
        Some(Trap::StackOverflow) => "overflowed its stack".into(),
        Some(trap) => format!("trapped: {trap}"),
        None => format!("{error:#}"),
    }
}

/// True when `error` is the deadline's interrupt.
pub(crate) fn is_deadline(error: &wasmtime::Error) -> bool {
    matches!(error.downcast_ref::<Trap>(), Some(Trap::Interrupt))
}

struct Kept {
    id: u64,
    owner: Weak<Shared>,
    live: Live,
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
        kept.push(Kept {
            id: shared.id,
            owner: Arc::downgrade(shared),
            live,
        });
    });
}

/// Runs `call` on this thread's instance of `shared`, creating it if needed. `call` says
/// whether the instance may be kept (false after a trap: its state may be half-changed).
pub(crate) fn with_live<T>(
    shared: &Arc<Shared>,
    call: impl FnOnce(&mut Live) -> (T, bool),
    failed: impl FnOnce(String) -> T,
) -> T {
    let outcome = LIVE.try_with(|kept| {
        // The borrow spans the call: a plugin cannot call back into another plugin (its one
        // import, the log, does not), so nothing else borrows this thread's instances.
        let mut kept = kept.borrow_mut();
        let at = match kept.iter().position(|k| k.id == shared.id) {
            Some(at) => at,
            None => {
                let live = match Live::new(shared) {
                    Ok(live) => live,
                    Err(e) => return Err(e.to_string()),
                };
                kept.retain(|k| k.owner.strong_count() > 0);
                kept.push(Kept {
                    id: shared.id,
                    owner: Arc::downgrade(shared),
                    live,
                });
                kept.len() - 1
            }
        };
        let (answer, keep_it) = call(&mut kept[at].live);
        if !keep_it {
            kept.swap_remove(at);
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
