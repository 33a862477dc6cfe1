//! Trying the fence from Rust: a storage that checks the token of every write.
//!
//! `cargo run -p fencekit --example fence_basics [DIR]`
//!
//! Node 1 leads in generation 4 and writes. It is paused; node 2 is elected in generation 5
//! and writes. Node 1 wakes up, still believing it leads, and tries to write: the fence
//! rejects it. The storage then restarts and the fence still remembers generation 5.

use fencekit::{Fence, FenceOptions, Token, Verdict};

fn write(fence: &Fence, key: &[u8], token: Token, what: &str) -> Result<(), fencekit::FenceError> {
    let verdict = fence.check_key(key, token)?;
    let outcome = match verdict {
        Verdict::Accepted => "accepted".to_owned(),
        Verdict::Advanced { previous: None } => "accepted (first mark)".to_owned(),
        Verdict::Advanced { previous: Some(p) } => format!("accepted, fence advanced from {p}"),
        Verdict::Stale { current } => format!("REJECTED as stale: {current} is newer"),
        Verdict::Conflict { current } => format!("REJECTED as a conflict with {current}"),
        Verdict::ForeignSource { bound } => format!(
            "REJECTED: the resource takes tokens from {}",
            fence.source(bound)?
        ),
    };
    println!("{what:<44} token ({token}): {outcome}");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let dir = std::env::args_os()
        .nth(1)
        .map_or_else(|| temp.path().to_path_buf(), Into::into);
    let key = b"ledger/invoices";
    let old_leader = Token::from_parts(4, 1)?;
    let new_leader = Token::from_parts(5, 2)?;

    let fence = Fence::open(&dir, FenceOptions::default())?;
    write(
        &fence,
        key,
        old_leader,
        "node 1 writes as leader of generation 4",
    )?;
    write(&fence, key, old_leader, "node 1 writes again")?;
    write(
        &fence,
        key,
        new_leader,
        "node 2, elected in generation 5, writes",
    )?;
    write(
        &fence,
        key,
        old_leader,
        "node 1 wakes from a pause and writes",
    )?;
    write(
        &fence,
        key,
        Token::from_parts(5, 3)?,
        "node 3 claims generation 5 too",
    )?;

    drop(fence);
    let fence = Fence::open(&dir, FenceOptions::default())?;
    println!(
        "-- the storage restarted; its fence reopened from {}",
        dir.display()
    );
    write(&fence, key, old_leader, "node 1 tries once more")?;
    write(&fence, key, new_leader, "node 2 writes")?;

    let id = fence.lookup(key).ok_or("the key survived the restart")?;
    let counters = fence.counters(id)?;
    println!(
        "since the restart: {} accepted, {} stale, {} conflicts",
        counters.accepted, counters.stale, counters.conflicts
    );
    assert_eq!(
        fence.check(id, old_leader)?,
        Verdict::Stale {
            current: new_leader
        }
    );
    Ok(())
}
