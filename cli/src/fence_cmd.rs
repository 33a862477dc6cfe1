//! `fencekit fence show DIR` and `fencekit fence rebase DIR`: an operator's view of a fence's
//! resources and their token sources, and the one way to move a resource to another source.
//!
//! Both open the fence itself, so the service that embeds it must be stopped first (the log's
//! lock says so otherwise); a running service rebases through its API (`Fence::rebase`,
//! `fk_fence_rebase`, the bindings' `rebase`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use fencekit::limits::RESOURCES_MAX;
use fencekit::{Fence, FenceFault, FenceOptions, LogError, Source};

#[derive(Subcommand, Debug)]
pub(crate) enum FenceCommand {
    /// List every resource of a fence: its mark, its token source and its last rebase.
    Show(Show),
    /// Move a resource to another token source (a coordinator re-created from scratch, a
    /// migration), clearing its mark (or, back to a former source, restoring that source's
    /// last mark): durable, recorded with who did it, never automatic.
    Rebase(Rebase),
}

#[derive(Args, Debug)]
pub(crate) struct Show {
    /// The fence's directory (its service stopped).
    dir: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct Rebase {
    /// The fence's directory (its service stopped).
    dir: PathBuf,
    /// The resource's key, as text.
    #[arg(long, conflicts_with = "key_hex", required_unless_present = "key_hex")]
    key: Option<String>,
    /// The resource's key, as hexadecimal bytes.
    #[arg(long)]
    key_hex: Option<String>,
    /// The new source: etcd:<cluster id, 16 hex digits>, zookeeper:<ensemble>,
    /// k8s-lease:<namespace>/<name>/<uid>, fencekit:<cluster>, named:<name>, or unnamed.
    #[arg(long)]
    to: String,
    /// Who rebases (a person, a change ticket): kept in the fence's log.
    #[arg(long)]
    by: String,
    /// The resource is new to this fence: register it and bind it before its first token
    /// (without this, a key the fence does not hold is refused as a likely typo).
    #[arg(long)]
    new_resource: bool,
}

pub(crate) fn run(command: &FenceCommand) -> Result<()> {
    match command {
        FenceCommand::Show(args) => show(args),
        FenceCommand::Rebase(args) => rebase(args),
    }
}

/// Opens the fence of `dir`, whatever capacity its owner gave it, with a message for the
/// operator's usual mistakes.
fn open(dir: &Path) -> Result<Fence> {
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: name a fence's directory",
            dir.display()
        );
    }
    // Opening makes a new log in an empty directory: never for a command given a wrong one.
    if !dir.join("superblock").exists() {
        bail!(
            "{} holds no fence log: name the directory the service opens its fence in",
            dir.display()
        );
    }
    let opened = Fence::open(dir, FenceOptions::default()).or_else(|e| match e.fault() {
        FenceFault::TooManyResources { .. } => Fence::open(
            dir,
            FenceOptions {
                max_resources: RESOURCES_MAX,
                ..FenceOptions::default()
            },
        ),
        _ => Err(e),
    });
    opened.map_err(|e| {
        let hint = match e.fault() {
            FenceFault::Log(LogError::Locked { .. }) => {
                "; stop the service that has the fence open (a rebase can also be done \
                 through its API: Fence::rebase, fk_fence_rebase, the bindings' rebase)"
            }
            FenceFault::Log(LogError::WrongOwner { found, .. }) if found.contains("store") => {
                "; a fencekit store's fence takes its group's own tokens and is checked \
                 against its ledger at start: it is never rebased"
            }
            _ => "",
        };
        anyhow::anyhow!("{e}{hint}")
    })
}

fn show(args: &Show) -> Result<()> {
    let fence = open(&args.dir)?;
    println!(
        "{:<32} {:<36} {:<28} last rebase",
        "resource", "mark", "source"
    );
    for id in fence.resources() {
        let key = show_key(fence.key(id)?);
        let mark = fence
            .mark(id)?
            .map_or("(none)".to_owned(), |t| t.to_string());
        let source = fence
            .bound_source(id)?
            .map_or("(none yet)".to_owned(), |s| s.to_string());
        let rebase = fence.last_rebase(id)?.map_or("-".to_owned(), |r| {
            format!(
                "from {} by {:?} at {} (cleared {})",
                r.from.map_or("no source".to_owned(), |s| s.to_string()),
                r.by,
                unix_ms_text(r.at_unix_ms),
                r.cleared_mark
                    .map_or("no mark".to_owned(), |t| t.to_string())
            )
        });
        println!("{key:<32} {mark:<36} {source:<28} {rebase}");
    }
    Ok(())
}

fn rebase(args: &Rebase) -> Result<()> {
    let key = match (&args.key, &args.key_hex) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(hex)) => decode_hex(hex).context("--key-hex")?,
        _ => bail!("give the resource as --key TEXT or --key-hex HEX"),
    };
    let to = Source::parse(&args.to).context("--to")?;
    let fence = open(&args.dir)?;
    let known = fence.lookup(&key).is_some();
    if !known && !args.new_resource {
        bail!(
            "{} has no resource {}: check the key, or give --new-resource to bind a new \
             resource before its first token",
            args.dir.display(),
            show_key(&key)
        );
    }
    let rebase = fence.rebase(&key, &to, &args.by)?;
    fence.close().context("closing the fence")?;
    if !known {
        println!("registered {} (new to this fence)", show_key(&key));
    }
    let mark = match rebase.restored_mark {
        Some(mark) => format!(
            "the resource took tokens from {to} before: its last mark from it, {mark}, is back, \
             and older tokens of {to} stay stale"
        ),
        None => format!("the first token of {to} sets the mark"),
    };
    println!(
        "rebased {} from {} to {to} by {:?}; cleared mark {}. Tokens of any other source are \
         refused from now on; {mark}.",
        show_key(&key),
        rebase
            .from
            .map_or("no source".to_owned(), |s| s.to_string()),
        rebase.by,
        rebase
            .cleared_mark
            .map_or("(none)".to_owned(), |t| t.to_string())
    );
    Ok(())
}

fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(char::is_control) => format!("{text:?}"),
        _ => format!(
            "0x{}",
            key.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

fn decode_hex(text: &str) -> Result<Vec<u8>> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{text:?} holds characters that are not hexadecimal digits");
    }
    if !text.len().is_multiple_of(2) {
        bail!("{text:?} is an odd number of hexadecimal digits: give two per byte");
    }
    Ok((0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("checked hex"))
        .collect())
}

/// Milliseconds since the epoch as UTC text, e.g. `Mon, 30 Nov 2026 22:56:03 GMT`.
fn unix_ms_text(ms: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}
