//! `fencekit plugin check`: loads a policy plugin, reports what it is, and dry-runs it.
//!
//! `--kind` says which kind of plugin it is; without it, the module's exports decide (read from
//! the binary, not searched for as text: a custom section or a data segment that mentions
//! `fk_validate` does not make a tie-breaker a validator). The limits are
//! `PluginLimits::default()` unless a flag changes one. The command fails when the plugin is
//! refused, with the reason.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use fencekit::{Fence, FenceOptions, NodeId, TieBreaker, Token, Validation, WriteValidator};
use fencekit_plugins::{
    Kind, Plugin, PluginLimits, WasmTieBreaker, WasmValidator, abi, export_names, limits,
};

/// Loads a fencekit policy plugin (.wasm or .wat), reports its ABI, and dry-runs it.
#[derive(Args, Debug)]
pub(crate) struct PluginCheck {
    /// The plugin.
    file: PathBuf,
    /// What the plugin is; by default, what its exports say (fk_validate: a validator;
    /// fk_election_priority and fk_resolve_conflict: a tie-breaker).
    #[arg(long, value_enum)]
    kind: Option<KindArg>,
    #[command(flatten)]
    limits: LimitArgs,
    /// For a validator: the resource key of the sample write.
    #[arg(long, default_value = "jobs/nightly-report")]
    key: String,
    /// For a validator: the sample write's payload (UTF-8).
    #[arg(long, default_value = "\u{1}Jdone")]
    payload: String,
    /// For a tie-breaker: a node's descriptor, as ID=TEXT (repeatable).
    #[arg(long = "descriptor", value_parser = parse_descriptor)]
    descriptors: Vec<(NodeId, String)>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum KindArg {
    Validator,
    TieBreaker,
}

impl From<KindArg> for Kind {
    fn from(kind: KindArg) -> Kind {
        match kind {
            KindArg::Validator => Kind::Validator,
            KindArg::TieBreaker => Kind::TieBreaker,
        }
    }
}

/// The plugin's limits (`PluginLimits`), each defaulting to the library's default.
#[derive(Args, Debug)]
struct LimitArgs {
    /// The largest module, in bytes (.wasm or .wat).
    #[arg(long, default_value_t = limits::MODULE_BYTES_DEFAULT)]
    module_bytes_max: usize,
    /// The most linear memory, in bytes (validators; a tie-breaker's is fixed at its declared
    /// size).
    #[arg(long, default_value_t = limits::MEMORY_BYTES_DEFAULT)]
    memory_bytes_max: usize,
    /// A validator's time per call, in milliseconds.
    #[arg(long, default_value_t = limits::DEADLINE_DEFAULT.as_millis() as u64)]
    deadline_ms: u64,
    /// A tie-breaker's fuel per call.
    #[arg(long, default_value_t = limits::FUEL_DEFAULT)]
    fuel: u64,
    /// The most table elements.
    #[arg(long, default_value_t = limits::TABLE_ELEMENTS_DEFAULT)]
    table_elements_max: usize,
    /// The most functions the module may define.
    #[arg(long, default_value_t = limits::FUNCTIONS_DEFAULT)]
    functions_max: usize,
    /// The most locals of one function, parameters included.
    #[arg(long, default_value_t = limits::FUNCTION_LOCALS_DEFAULT)]
    function_locals_max: usize,
    /// The most locals of all functions together.
    #[arg(long, default_value_t = limits::LOCALS_DEFAULT)]
    locals_max: usize,
    /// The deepest block/loop/if nesting in a function.
    #[arg(long, default_value_t = limits::NESTING_DEFAULT)]
    nesting_max: usize,
    /// The most locals times branches back to a loop in a function (compile time grows
    /// with the square of it).
    #[arg(long, default_value_t = limits::LOOP_BRANCH_LOCALS_DEFAULT)]
    loop_branch_locals_max: usize,
    /// The largest function body, in bytes.
    #[arg(long, default_value_t = limits::FUNCTION_BYTES_DEFAULT)]
    function_bytes_max: usize,
    /// The largest code section, in bytes.
    #[arg(long, default_value_t = limits::CODE_BYTES_DEFAULT)]
    code_bytes_max: usize,
    /// The most types.
    #[arg(long, default_value_t = limits::TYPES_DEFAULT)]
    types_max: usize,
    /// The most globals.
    #[arg(long, default_value_t = limits::GLOBALS_DEFAULT)]
    globals_max: usize,
    /// The most data segments.
    #[arg(long, default_value_t = limits::DATA_SEGMENTS_DEFAULT)]
    data_segments_max: usize,
    /// The most element segments.
    #[arg(long, default_value_t = limits::ELEMENT_SEGMENTS_DEFAULT)]
    element_segments_max: usize,
    /// The longest compilation, in milliseconds.
    #[arg(long, default_value_t = limits::COMPILE_DEADLINE_DEFAULT.as_millis() as u64)]
    compile_deadline_ms: u64,
}

impl LimitArgs {
    fn limits(&self) -> PluginLimits {
        PluginLimits {
            module_bytes_max: self.module_bytes_max,
            memory_bytes_max: self.memory_bytes_max,
            deadline: Duration::from_millis(self.deadline_ms),
            fuel: self.fuel,
            table_elements_max: self.table_elements_max,
            functions_max: self.functions_max,
            function_locals_max: self.function_locals_max,
            locals_max: self.locals_max,
            nesting_max: self.nesting_max,
            loop_branch_locals_max: self.loop_branch_locals_max,
            function_bytes_max: self.function_bytes_max,
            code_bytes_max: self.code_bytes_max,
            types_max: self.types_max,
            globals_max: self.globals_max,
            data_segments_max: self.data_segments_max,
            element_segments_max: self.element_segments_max,
            compile_deadline: Duration::from_millis(self.compile_deadline_ms),
        }
    }
}

/// What the module's exports say it is, if they say one thing.
fn kind_from_exports(exports: &[String]) -> Option<Kind> {
    let has = |name: &str| exports.iter().any(|e| e == name);
    let validator = has(abi::EXPORT_VALIDATE);
    let tie_breaker = has(abi::EXPORT_ELECTION_PRIORITY) || has(abi::EXPORT_RESOLVE_CONFLICT);
    match (validator, tie_breaker) {
        (true, false) => Some(Kind::Validator),
        (false, true) => Some(Kind::TieBreaker),
        _ => None,
    }
}

fn parse_descriptor(s: &str) -> Result<(NodeId, String), String> {
    let (id, text) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ID=TEXT"))?;
    let id = id
        .parse::<u64>()
        .map_err(|e| format!("{id:?}: {e}"))
        .and_then(|id| NodeId::new(id).map_err(|e| e.to_string()))?;
    Ok((id, text.to_owned()))
}

fn token(generation: u64, holder: u64) -> Result<Token> {
    Ok(Token::from_parts(generation, holder)?)
}

pub(crate) fn run(args: &PluginCheck) -> Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("read {}", args.file.display()))?;
    let limits = args.limits.limits();
    let file = args.file.display();
    let exports = export_names(&bytes, &limits).map_err(|e| anyhow!("{file} is refused: {e}"))?;
    let exported = kind_from_exports(&exports);
    let kind = match (args.kind.map(Kind::from), exported) {
        (Some(kind), _) | (None, Some(kind)) => kind,
        (None, None) => bail!(
            "{file} is neither a validator nor a tie-breaker by its exports ({}): a validator \
             exports {}, a tie-breaker {} and {}; say which it is with --kind",
            if exports.is_empty() {
                "none".to_owned()
            } else {
                exports.join(", ")
            },
            abi::EXPORT_VALIDATE,
            abi::EXPORT_ELECTION_PRIORITY,
            abi::EXPORT_RESOLVE_CONFLICT,
        ),
    };
    let plugin = Plugin::load(kind, &bytes, limits).map_err(|e| {
        let hint = match exported {
            Some(other) if other != kind => {
                format!(" (its exports are a {}'s)", other.as_str())
            }
            _ => String::new(),
        };
        anyhow!(
            "{file} is refused as a {}{hint}: {e}; see plugins/README.md for the plugin ABI \
             and its load limits",
            kind.as_str()
        )
    })?;
    let info = plugin.info();
    println!("{}: a {} plugin", args.file.display(), kind.as_str());
    println!("  ABI version      {}", info.abi_version);
    println!("  input buffer     {} bytes", info.input_capacity);
    println!(
        "  memory           {} bytes at start",
        info.memory_min_bytes
    );
    println!(
        "  imports          {}",
        if info.imports_log {
            "fencekit.log"
        } else {
            "none"
        }
    );
    println!("  exports          {}", info.exports.join(", "));
    let sha: String = info.sha256.iter().map(|b| format!("{b:02x}")).collect();
    println!("  sha256           {sha} ({} bytes)", info.module_bytes);
    match kind {
        Kind::Validator => dry_run_validator(plugin, args),
        Kind::TieBreaker => dry_run_tie_breaker(plugin, args),
    }
}

fn dry_run_validator(plugin: Plugin, args: &PluginCheck) -> Result<()> {
    let validator = Arc::new(WasmValidator::new(plugin)?);
    let answer = validator.validate(
        args.key.as_bytes(),
        token(2, 1)?,
        Some(token(1, 1)?),
        args.payload.as_bytes(),
    );
    println!(
        "dry run: key {:?}, payload {:?}: {}",
        args.key,
        args.payload,
        match &answer {
            Validation::Accept => "accepted".to_owned(),
            Validation::Reject(r) => format!("rejected, code {}: {}", r.code, r.reason),
        }
    );
    // The same write through a fence: the token first, then the payload.
    let dir = tempfile::tempdir().context("create a scratch directory")?;
    let fence = Fence::open(dir.path(), FenceOptions::default())?;
    fence.set_validator(Some(validator));
    let id = fence.register(args.key.as_bytes())?;
    let verdict = fence.check_write(id, token(2, 1)?, args.payload.as_bytes());
    println!("through a fence: {verdict:?}");
    Ok(())
}

fn dry_run_tie_breaker(plugin: Plugin, args: &PluginCheck) -> Result<()> {
    let descriptors: HashMap<NodeId, Vec<u8>> = args
        .descriptors
        .iter()
        .map(|(id, text)| (*id, text.clone().into_bytes()))
        .collect();
    let mut nodes: Vec<NodeId> = descriptors.keys().copied().collect();
    if nodes.is_empty() {
        nodes = (1..=3).filter_map(|id| NodeId::new(id).ok()).collect();
    }
    nodes.sort();
    let tie_breaker = WasmTieBreaker::new(plugin, descriptors)?;
    for node in &nodes {
        match tie_breaker.try_election_priority(*node) {
            Some(p) => println!("dry run: priority of node {node}: {p}"),
            None => println!("dry run: priority of node {node}: the plugin failed (0 is used)"),
        }
    }
    let (current, challenger) = (token(4, 3)?, token(4, 2)?);
    println!(
        "dry run: conflict, current {current}, challenger {challenger}: {:?}",
        tie_breaker.resolve_conflict(b"jobs/nightly-report", current, challenger)
    );
    Ok(())
}
