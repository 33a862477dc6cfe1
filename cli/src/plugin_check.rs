//! `fencekit plugin check`: loads a policy plugin, reports what it is, and dry-runs it.
//!
//! A module with `fk_validate` is checked as a validator, one without as a tie-breaker. The
//! command fails when the plugin is refused, with the reason.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use fencekit::{Fence, FenceOptions, NodeId, TieBreaker, Token, Validation, WriteValidator};
use fencekit_plugins::{Kind, Plugin, PluginLimits, WasmTieBreaker, WasmValidator, abi};

/// Loads a fencekit policy plugin (.wasm or .wat), reports its ABI, and dry-runs it.
#[derive(Args, Debug)]
pub(crate) struct PluginCheck {
    /// The plugin.
    file: PathBuf,
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
    let text = String::from_utf8_lossy(&bytes);
    let kind = if text.contains(abi::EXPORT_VALIDATE) {
        Kind::Validator
    } else {
        Kind::TieBreaker
    };
    let plugin = Plugin::load(kind, &bytes, PluginLimits::default()).map_err(|e| {
        anyhow!(
            "{} is refused as a {}: {e}; see plugins/README.md for the plugin ABI",
            args.file.display(),
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
