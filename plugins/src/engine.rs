//! The two wasmtime engines, one per kind of plugin, shared by every plugin of the process.
//!
//! - Validators run on the write path under a wall-clock deadline: epoch interruption, with a
//!   background thread advancing the epoch every millisecond.
//! - Tie-breakers run on every replica and must decide alike: fuel instead of time (the same
//!   count on every machine), NaN canonicalisation, deterministic relaxed SIMD, no threads.

use std::sync::{Mutex, OnceLock};

use wasmtime::{Config, Engine};

use crate::error::PluginError;
use crate::limits::{EPOCH_TICK, STACK_BYTES};

/// What a plugin decides.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A storage validator: `fk_validate`.
    Validator,
    /// A tie-breaker: `fk_election_priority` and `fk_resolve_conflict`.
    TieBreaker,
}

impl Kind {
    /// Its name, lowercase.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Validator => "validator",
            Kind::TieBreaker => "tie-breaker",
        }
    }
}

fn base_config() -> Config {
    // No wasm threads: wasmtime is built without its `threads` feature, so shared memories
    // and atomics waits are refused at compile time.
    let mut config = Config::new();
    config.max_wasm_stack(STACK_BYTES);
    // A memory's base never moves (it grows in place inside its reservation), so an
    // instance can keep a pointer to its input buffer instead of looking the memory up per
    // call.
    config.memory_may_move(false);
    config
}

fn build(config: &Config) -> Result<Engine, PluginError> {
    Engine::new(config).map_err(|e| PluginError::Instantiate(format!("wasmtime engine: {e}")))
}

static VALIDATORS: OnceLock<Engine> = OnceLock::new();
static TIE_BREAKERS: OnceLock<Engine> = OnceLock::new();
static BUILDING: Mutex<()> = Mutex::new(());

/// The engine for plugins of `kind`, made on first use.
pub(crate) fn engine(kind: Kind) -> Result<&'static Engine, PluginError> {
    let cell = match kind {
        Kind::Validator => &VALIDATORS,
        Kind::TieBreaker => &TIE_BREAKERS,
    };
    if let Some(engine) = cell.get() {
        return Ok(engine);
    }
    // One thread builds it (and starts its ticker); the others wait and take it.
    let _building = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(engine) = cell.get() {
        return Ok(engine);
    }
    let engine = match kind {
        Kind::Validator => validator_engine()?,
        Kind::TieBreaker => tie_breaker_engine()?,
    };
    Ok(cell.get_or_init(|| engine))
}

fn validator_engine() -> Result<Engine, PluginError> {
    let mut config = base_config();
    config.epoch_interruption(true);
    let engine = build(&config)?;
    let ticking = engine.clone();
    std::thread::Builder::new()
        .name("fencekit-plugin-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        })
        .map_err(|e| PluginError::Instantiate(format!("start the epoch thread: {e}")))?;
    Ok(engine)
}

fn tie_breaker_engine() -> Result<Engine, PluginError> {
    let mut config = base_config();
    config.consume_fuel(true);
    config.cranelift_nan_canonicalization(true);
    config.relaxed_simd_deterministic(true);
    build(&config)
}
