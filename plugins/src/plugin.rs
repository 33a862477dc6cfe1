//! A loaded plugin: a checked, compiled module, shared by every thread that calls it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use sha2::{Digest, Sha256};
use wasmtime::{ExternType, Module};

use crate::abi;
use crate::engine::{self, Kind};
use crate::error::PluginError;
use crate::instance::{self, Live};
use crate::limits::PluginLimits;
use crate::precheck;

/// What loading found out about a plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// Validator or tie-breaker.
    pub kind: Kind,
    /// The ABI version it reports.
    pub abi_version: i32,
    /// Its input buffer's capacity: the largest record it can be given.
    pub input_capacity: usize,
    /// Its memory's declared minimum, in bytes.
    pub memory_min_bytes: usize,
    /// Whether it imports the host log function.
    pub imports_log: bool,
    /// Its exports' names.
    pub exports: Vec<String>,
    /// The SHA-256 of the bytes it was loaded from.
    pub sha256: [u8; 32],
    /// The size of those bytes.
    pub module_bytes: usize,
}

/// What every thread's instance of one plugin shares.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) kind: Kind,
    pub(crate) module: Module,
    pub(crate) limits: PluginLimits,
    /// `limits.deadline` in epoch ticks, computed once: a 128-bit division per call showed
    /// in the profile.
    pub(crate) deadline_ticks: u64,
    pub(crate) info: PluginInfo,
    /// Its instances on every thread: dropped with it.
    pub(crate) slots: instance::Slots,
}

/// A loaded plugin: the module compiled once, checked against the ABI, and instantiated once
/// to prove it. Cheap to clone; `Send + Sync`. Each thread that calls it gets its own
/// instance.
#[derive(Clone)]
pub struct Plugin {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("kind", &self.shared.kind)
            .field("info", &self.shared.info)
            .finish_non_exhaustive()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Plugin {
    /// Loads a storage validator from `.wasm` bytes or WAT text.
    pub fn validator(bytes: &[u8], limits: PluginLimits) -> Result<Plugin, PluginError> {
        Plugin::load(Kind::Validator, bytes, limits)
    }

    /// Loads a tie-breaker from `.wasm` bytes or WAT text.
    pub fn tie_breaker(bytes: &[u8], limits: PluginLimits) -> Result<Plugin, PluginError> {
        Plugin::load(Kind::TieBreaker, bytes, limits)
    }

    /// Loads a plugin of `kind`: checks its size, turns WAT text into a binary, checks the
    /// binary against the load limits (functions, locals, nesting, body and code sizes, types,
    /// globals, segments), compiles it within `limits.compile_deadline`, refuses any import
    /// but the host log, and instantiates it once to check its exports, ABI version and input
    /// buffer.
    pub fn load(kind: Kind, bytes: &[u8], limits: PluginLimits) -> Result<Plugin, PluginError> {
        let module = compile(kind, bytes, &limits)?;
        Plugin::from_module(kind, module, bytes, limits)
    }

    pub(crate) fn from_module(
        kind: Kind,
        module: Module,
        bytes: &[u8],
        limits: PluginLimits,
    ) -> Result<Plugin, PluginError> {
        limits.validate()?;
        let mut imports_log = false;
        for import in module.imports() {
            let ty = import.ty();
            let is_log = (import.module(), import.name()) == abi::IMPORT_LOG
                && matches!(&ty, ExternType::Func(f)
                    if f.params().map(|p| p.to_string()).eq(["i32", "i32"]) && f.results().len() == 0);
            if !is_log {
                return Err(PluginError::Import {
                    module: import.module().to_owned(),
                    name: import.name().to_owned(),
                    ty: describe(&ty),
                });
            }
            imports_log = true;
        }
        let memory_min_bytes = match module.get_export(abi::EXPORT_MEMORY) {
            Some(ExternType::Memory(memory)) => {
                if memory.is_shared() || memory.is_64() {
                    return Err(PluginError::Export {
                        name: abi::EXPORT_MEMORY,
                        problem: "must be an unshared 32-bit memory".into(),
                    });
                }
                usize::try_from(memory.minimum().saturating_mul(65536)).unwrap_or(usize::MAX)
            }
            Some(other) => {
                return Err(PluginError::Export {
                    name: abi::EXPORT_MEMORY,
                    problem: format!("must be a memory, is {}", describe(&other)),
                });
            }
            None => {
                return Err(PluginError::Export {
                    name: abi::EXPORT_MEMORY,
                    problem: "missing: a plugin exports its memory".into(),
                });
            }
        };
        let info = PluginInfo {
            kind,
            abi_version: 0,
            input_capacity: 0,
            memory_min_bytes,
            imports_log,
            exports: module.exports().map(|e| e.name().to_owned()).collect(),
            sha256: Sha256::digest(bytes).into(),
            module_bytes: bytes.len(),
        };
        let mut shared = Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            kind,
            module,
            deadline_ticks: limits.deadline_ticks(),
            limits,
            info,
            slots: instance::Slots::default(),
        };
        // Prove the module against the ABI now, not at the first write.
        let live = Live::new(&shared)?;
        shared.info.abi_version = abi::ABI_VERSION;
        shared.info.input_capacity = live.capacity();
        let plugin = Plugin {
            shared: Arc::new(shared),
        };
        instance::keep(&plugin.shared, live);
        Ok(plugin)
    }

    /// Creates a fresh instance and drops it: proves the plugin still instantiates (and
    /// measures what a tie-breaker call or the first call on a thread pays).
    pub fn instantiate(&self) -> Result<(), PluginError> {
        Live::new(&self.shared).map(drop)
    }

    /// What loading found out.
    pub fn info(&self) -> &PluginInfo {
        &self.shared.info
    }

    /// Validator or tie-breaker.
    pub fn kind(&self) -> Kind {
        self.shared.kind
    }
}

/// Checks `bytes` against `limits` and compiles them within `limits.compile_deadline`.
///
/// wasmtime cannot interrupt a compilation, so it runs on a thread of its own and the caller
/// waits at most the deadline. Past it the load is refused and that thread is left to finish
/// in the background; its result is then dropped. The prechecks bound how long it can run and
/// how much it can allocate, and wasmtime is built without parallel compilation (its
/// `parallel-compilation` feature is off), so an abandoned compilation holds one core.
pub(crate) fn compile(
    kind: Kind,
    bytes: &[u8],
    limits: &PluginLimits,
) -> Result<Module, PluginError> {
    limits.validate()?;
    let binary = precheck::binary(bytes, limits)?;
    precheck::check(&binary, limits)?;
    compile_checked(kind, binary.into_owned(), limits)
}

/// Compilations past their deadline still running. The prechecks do not bound compile time
/// alone (an outside attack found 1,000 locals under 127 nested loops, inside every limit,
/// compiling for minutes): while one is running, a load waits for it within its own
/// deadline, and is refused if it must wait longer, so hostile modules hold one core at most,
/// not one per retry.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// Compiles a binary that passed `precheck::check`, within `limits.compile_deadline`.
pub(crate) fn compile_checked(
    kind: Kind,
    binary: Vec<u8>,
    limits: &PluginLimits,
) -> Result<Module, PluginError> {
    let started = std::time::Instant::now();
    while ABANDONED.load(Ordering::Acquire) > 0 {
        if started.elapsed() >= limits.compile_deadline {
            return Err(PluginError::CompileBusy);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let deadline = limits.compile_deadline.saturating_sub(started.elapsed());
    let engine = engine::engine(kind)?;
    let (done, answer) = mpsc::sync_channel(1);
    let abandoned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = abandoned.clone();
    std::thread::Builder::new()
        .name("fencekit-plugin-compile".into())
        .spawn(move || {
            let compiled = Module::from_binary(engine, &binary);
            if finished.swap(true, Ordering::AcqRel) {
                // Abandoned by its caller: counted in ABANDONED until now.
                ABANDONED.fetch_sub(1, Ordering::AcqRel);
            }
            // The receiver may be gone (deadline passed): the module is dropped.
            let _ = done.send(compiled);
        })
        .map_err(|e| PluginError::Instantiate(format!("start a compiling thread: {e}")))?;
    match answer.recv_timeout(deadline) {
        Ok(compiled) => compiled.map_err(|e| PluginError::Invalid(format!("{e:#}"))),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            // Counted first, then the flag: if the thread set it already (it finished just
            // now), uncount; otherwise the thread uncounts itself when it ends.
            ABANDONED.fetch_add(1, Ordering::AcqRel);
            if abandoned.swap(true, Ordering::AcqRel) {
                ABANDONED.fetch_sub(1, Ordering::AcqRel);
            }
            Err(PluginError::CompileDeadline {
                deadline: limits.compile_deadline,
            })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(PluginError::Invalid(
            "the compiler stopped without an answer (it panicked)".into(),
        )),
    }
}

/// An import's or export's type, for error messages.
pub(crate) fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => {
            let params: Vec<String> = f.params().map(|p| p.to_string()).collect();
            let results: Vec<String> = f.results().map(|r| r.to_string()).collect();
            format!("func ({}) -> ({})", params.join(", "), results.join(", "))
        }
        ExternType::Memory(_) => "memory".into(),
        ExternType::Table(_) => "table".into(),
        ExternType::Global(_) => "global".into(),
        ExternType::Tag(_) => "tag".into(),
    }
}
