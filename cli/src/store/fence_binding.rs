//! The store's fence belongs with its ledger: two checks at start that refuse a fence
//! directory deleted, emptied, replaced or restored from an older copy, any of which would
//! accept the deposed leaders the ledger shows were fenced.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use fencekit::{Fence, ResourceId};

use super::ledger::Ledger;

/// Both checks, the more specific first; records the fence's log id only once both passed.
pub(super) fn check_and_bind(
    fence: &Fence,
    id: ResourceId,
    ledger: &Ledger,
    data: &Path,
) -> Result<()> {
    let recorded = check_fence_id(fence, data)?;
    check_fence_against_ledger(fence, id, ledger, data)?;
    if !recorded {
        record_fence_id(fence, data)?;
    }
    Ok(())
}

/// The ledger is the fence's witness from outside its log: every write it records, accepted
/// or refused, was decided when the fence's mark was at its generation or above. A fence whose mark is below one of them went
/// back (its directory deleted, emptied, or restored from an older copy or another store's),
/// and would accept the deposed leaders the ledger shows were fenced: refuse to start.
fn check_fence_against_ledger(
    fence: &Fence,
    id: ResourceId,
    ledger: &Ledger,
    data: &Path,
) -> Result<()> {
    let Some(witnessed) = ledger.max_generation() else {
        return Ok(());
    };
    let mark = fence
        .mark(id)
        .map_err(|e| anyhow!("the store's fence: {e}"))?
        .map(|t| t.generation.get());
    if mark.is_none_or(|mark| mark < witnessed) {
        bail!(
            "{} went back: its mark is {}, but {} records a write decided at generation \
             {witnessed}; the fence would accept writes it refused. Restore the fence \
             directory that goes with this ledger (or move both away to start empty)",
            data.join("fence").display(),
            mark.map_or("none".to_owned(), |g| format!("generation {g}")),
            data.join("ledger.sqlite").display()
        );
    }
    Ok(())
}

/// `<data>/fence.id` names the store's fence log, written when the log is made: a fence
/// directory deleted, emptied or replaced by another store's makes a log of another id, and
/// the store refuses to start on it instead of accepting every token as new. Whether an id
/// is recorded (none: a new log, or one a store of an earlier version made).
fn check_fence_id(fence: &Fence, data: &Path) -> Result<bool> {
    let path = data.join("fence.id");
    let id = fence.log_identity().id.to_string();
    match read_small_regular_file(&path) {
        Ok(recorded) if recorded.trim() == id => Ok(true),
        Ok(recorded) => bail!(
            "{} holds log {id}, but {} says this store's fence is log {}: the fence directory \
             was deleted, emptied or replaced, and would accept writes it refused. Restore \
             it (or move the whole data directory away to start empty)",
            data.join("fence").display(),
            path.display(),
            recorded.trim()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Records the fence's log id in `<data>/fence.id`, durably.
fn record_fence_id(fence: &Fence, data: &Path) -> Result<()> {
    let path = data.join("fence.id");
    let id = fence.log_identity().id.to_string();
    let temp = data.join("fence.id.tmp");
    // Created new, never through whatever (a planted link) has the name.
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", temp.display()));
        }
        _ => {}
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut file| {
            use std::io::Write as _;
            file.write_all(format!("{id}\n").as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, &path))
        .and_then(|()| std::fs::File::open(data)?.sync_all())
        .with_context(|| format!("recording the fence's log id in {}", path.display()))
}

/// The text of a small regular file: anything else at `path` (a FIFO would block, a link to
/// `/dev/zero` never end) is refused before it is opened.
fn read_small_regular_file(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() || meta.len() > 4096 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file of at most 4 KiB (a FIFO, device, directory or link)",
        ));
    }
    std::fs::read_to_string(path)
}
