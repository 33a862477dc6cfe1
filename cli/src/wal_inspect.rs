//! `fencekit wal inspect DIR`: verifies a log (a fence's, a store's or a node's) without
//! changing it or opening any file for writing, and prints its identity, superblock, segment
//! chain and records readably.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use fencekit::Wal;
use fencekit::inspect::describe;

/// Verifies the log in a directory and prints its records.
#[derive(Args, Debug)]
pub(crate) struct WalInspect {
    /// The log's directory: a fence's directory, or a node's data directory.
    dir: PathBuf,
    /// Print only the summary.
    #[arg(long)]
    summary: bool,
}

pub(crate) fn run(args: &WalInspect) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let mut lines = 0u64;
    let summary = args.summary;
    let report = Wal::inspect(&args.dir, &Default::default(), &mut |record| {
        if summary {
            return Ok(());
        }
        let (segment, offset) = (record.position.segment(), record.position.offset());
        for line in describe(&record)? {
            lines += 1;
            // A closed pipe (`| head`) ends the listing quietly.
            use std::io::Write as _;
            let _ = writeln!(
                out,
                "{segment:>4}:{offset:<10} {:<16} gen {:<6} {line}",
                record.kind.name().unwrap_or("unknown"),
                record.generation
            );
        }
        Ok(())
    })
    .with_context(|| {
        format!(
            "{} does not hold a readable log (a fence's directory or a node's data \
             directory)",
            args.dir.display()
        )
    })?;
    if let Some(identity) = &report.identity {
        println!("log {} of {}", identity.id, identity.owner);
    }
    if let Some(superblock) = &report.superblock {
        println!(
            "superblock: update {}, {} of 4 copies valid, live segments {}..={}, durable \
             through {}:{}",
            superblock.sequence,
            report.superblock_copies,
            superblock.first,
            superblock.last,
            superblock.durable.segment(),
            superblock.durable.offset()
        );
    }
    for segment in &report.chain {
        println!(
            "segment {}{}: {} records, ending at offset {}{}",
            segment.number,
            if segment.base { " (snapshot base)" } else { "" },
            segment.records,
            segment.end,
            if segment.base {
                ""
            } else {
                ", continues the segment before it"
            }
        );
    }
    println!(
        "{}: {} records in {} segment(s), verified{}",
        args.dir.display(),
        report.records,
        report.segments,
        if summary {
            String::new()
        } else {
            format!(" ({lines} lines)")
        }
    );
    if let Some(torn) = &report.torn_tail {
        println!(
            "torn tail: {} bytes after offset {} of {} were never acknowledged; opening the \
             log will cut them off",
            torn.discarded_bytes,
            torn.offset,
            torn.path.display()
        );
    }
    for path in &report.removed_segments {
        println!(
            "left-over segment {}: opening the log will remove it",
            path.display()
        );
    }
    for path in &report.removed_temps {
        println!(
            "left-over temporary file {}: opening the log will remove it",
            path.display()
        );
    }
    Ok(())
}
