//! I6: nothing acknowledged is lost; a torn tail is cut at the last whole record; damage
//! before the tail is refused with the file and offset.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;

use fencekit::{LogError, Position, WalOptions};

use crate::support::{Owned, copy_dir, kind, open_wal, segments};

/// Appends `count` records, each synced on its own (so each one is acknowledged and each
/// later record witnesses that the earlier ones were synced), and leaves in `dir` what a
/// kill -9 right after the last sync leaves: the files as they are while the log is open
/// (a clean close would also record in the superblock how far the log is durable). Returns
/// the records and the position each one starts at.
fn synced_log(dir: &std::path::Path, count: u64, len: usize) -> (Vec<Owned>, Vec<Position>) {
    let work = tempfile::tempdir().unwrap();
    let (wal, existing) = open_wal(work.path()).unwrap();
    assert!(existing.is_empty());
    let mut records = Vec::new();
    let mut starts = Vec::new();
    let mut start = wal.durable();
    for i in 0..count {
        let record = Owned::new(1 + (i % 3) as u8, i + 1, len);
        let end = record.append_to(&wal);
        wal.sync_through(end).unwrap();
        starts.push(start);
        start = end;
        records.push(record);
    }
    starts.push(start);
    copy_files(work.path(), dir);
    (records, starts)
}

fn copy_files(from: &std::path::Path, to: &std::path::Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Writes and syncs enough records to fill several small segments.
fn multi_segment_log(dir: &std::path::Path) {
    let (wal, _) = open_wal(dir).unwrap();
    for i in 0..2000u64 {
        Owned::new(1 + (i % 2) as u8, i, 96).append_to(&wal);
    }
    wal.sync().unwrap();
    assert!(
        segments(dir).len() >= 3,
        "the log must span several segments"
    );
}

#[test]
fn records_survive_reopen_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let (wal, _) = open_wal(dir.path()).unwrap();
        for i in 0..3000u64 {
            let record = Owned::new(7, i, (i as usize * 37) % 300);
            record.append_to(&wal);
            expected.push(record);
            if i % 7 == 0 {
                wal.sync().unwrap();
            }
        }
        wal.sync().unwrap();
    }
    assert!(
        segments(dir.path()).len() > 3,
        "the test must roll segments"
    );
    let (_, records) = open_wal(dir.path()).unwrap();
    assert_eq!(records, expected);
}

/// Zeroes `path` from `from` to its end: what a write torn by a power loss leaves in a
/// preallocated, zero-filled segment (whole sectors never written).
fn zero_from(path: &std::path::Path, from: u64) {
    let len = fs::metadata(path).unwrap().len();
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(&vec![0u8; (len - from) as usize], from)
        .unwrap();
}

#[test]
fn a_tear_at_every_byte_of_the_last_records_recovers_the_prefix_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (records, starts) = synced_log(dir.path(), 30, 120);
    let segment = &segments(dir.path())[0];
    let first = starts[records.len() - 3].offset();
    let end = starts[records.len()].offset();
    // A torn write leaves whole sectors unwritten: the tear is at a sector boundary, or at a
    // record boundary (the sector's older contents end there).
    let tears =
        (first..=end).filter(|cut| cut % 512 == 0 || starts.iter().any(|s| s.offset() == *cut));
    for cut in tears {
        let copy = copy_dir(dir.path());
        zero_from(&copy.path().join(segment.file_name().unwrap()), cut);
        let whole = starts
            .iter()
            .skip(1)
            .filter(|end| end.offset() <= cut)
            .count();
        let (wal, recovered) =
            open_wal(copy.path()).unwrap_or_else(|e| panic!("cut at {cut}: recovery refused: {e}"));
        assert_eq!(recovered, records[..whole], "cut at {cut}");
        if cut % 97 == 0 {
            // The log goes on after the cut, and what is appended there survives.
            wal.append_sync(kind(9), 99, b"after the tear").unwrap();
            drop(wal);
            let (_, again) = open_wal(copy.path()).unwrap();
            assert_eq!(again.len(), whole + 1);
            assert_eq!(again[whole].payload, b"after the tear");
        }
    }
}

#[test]
fn a_batch_torn_at_sector_granularity_loses_only_what_follows_its_first_hole() {
    let dir = tempfile::tempdir().unwrap();
    let (acked, starts) = synced_log(dir.path(), 5, 64);
    // One more batch, written by a single sync: its records do not witness one another.
    let mut batch = Vec::new();
    let batch_start = starts[acked.len()];
    // Held open: each copy below is what a kill -9 after the batch's sync leaves.
    let (wal, _) = open_wal(dir.path()).unwrap();
    for i in 0..20u64 {
        let record = Owned::new(4, 100 + i, 200);
        record.append_to(&wal);
        batch.push(record);
    }
    wal.sync().unwrap();
    let segment = segments(dir.path())[0].clone();
    let record_len = 32 + 200;
    let batch_offset = batch_start.offset() as usize;
    let batch_end = batch_offset + batch.len() * record_len;
    // Power loss while the batch was being written: some of its sectors never reached the disk.
    for hole in (batch_offset.next_multiple_of(512)..batch_end).step_by(512) {
        let copy = copy_dir(dir.path());
        let file = OpenOptions::new()
            .write(true)
            .open(copy.path().join(segment.file_name().unwrap()))
            .unwrap();
        file.write_all_at(&[0u8; 512], hole as u64).unwrap();
        drop(file);
        let (_, recovered) = open_wal(copy.path()).unwrap();
        // Records wholly before the hole survive; the one it hits and all after it go.
        let intact = (hole - batch_offset) / record_len;
        let mut expected = acked.clone();
        expected.extend_from_slice(&batch[..intact.min(batch.len())]);
        assert_eq!(recovered, expected, "hole at {hole}");
    }
    drop(wal);
}

#[test]
fn after_a_clean_close_the_last_records_cannot_go_missing_unseen() {
    let dir = tempfile::tempdir().unwrap();
    let (records, starts) = synced_log(dir.path(), 8, 300);
    // Opening records in the superblock how far the log is durable; closing does too.
    let (wal, _) = open_wal(dir.path()).unwrap();
    let extra = Owned::new(2, 99, 300);
    let end = extra.append_to(&wal);
    wal.sync_through(end).unwrap();
    drop(wal);
    let segment = segments(dir.path())[0].clone();
    // Zeroing from any record boundary on looks like a torn write, yet is refused now.
    for k in [records.len() - 2, records.len()] {
        let copy = copy_dir(dir.path());
        zero_from(
            &copy.path().join(segment.file_name().unwrap()),
            starts[k].offset(),
        );
        let message = open_wal(copy.path()).unwrap_err().to_string();
        assert!(message.contains("superblock says"), "{message}");
    }
    let (wal, again) = open_wal(dir.path()).unwrap();
    assert_eq!(again.len(), records.len() + 1);
    drop(wal);
}

#[test]
fn a_flipped_bit_in_any_acknowledged_record_is_refused_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    // Payloads of a multiple of 8 bytes: no padding, so no sector piece of a record is zero.
    let (records, starts) = synced_log(dir.path(), 25, 96);
    let segment = segments(dir.path())[0].clone();
    let name = segment.file_name().unwrap().to_owned();
    for k in 0..records.len() {
        let start = starts[k].offset();
        let len = starts[k + 1].offset() - start;
        for probe in 0..4u64 {
            let bit = (k as u64 * 7919 + probe * 104_729) % (len * 8);
            let copy = copy_dir(dir.path());
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(copy.path().join(&name))
                .unwrap();
            let mut byte = [0u8];
            file.read_exact_at(&mut byte, start + bit / 8).unwrap();
            byte[0] ^= 1 << (bit % 8);
            file.write_all_at(&byte, start + bit / 8).unwrap();
            drop(file);
            match open_wal(copy.path()) {
                Err(LogError::Corrupt { path, offset, .. }) => {
                    assert_eq!(path.file_name().unwrap(), name, "record {k}");
                    assert_eq!(offset, start, "record {k}, bit {bit}");
                }
                Err(other) => panic!("record {k}, bit {bit}: wrong error {other}"),
                Ok(_) => panic!("record {k}, bit {bit}: damage was not noticed"),
            }
        }
    }
}

#[test]
fn corruption_message_names_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (_, starts) = synced_log(dir.path(), 10, 40);
    let segment = segments(dir.path())[0].clone();
    let at = starts[3].offset() + 40;
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.write_all_at(&[0xFF], at).unwrap();
    drop(file);
    let message = open_wal(dir.path()).unwrap_err().to_string();
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("offset {}", starts[3].offset())),
        "{message}"
    );
    assert!(message.contains("synced"), "{message}");
}

#[test]
fn a_missing_or_damaged_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    multi_segment_log(dir.path());
    let files = segments(dir.path());

    let missing = copy_dir(dir.path());
    fs::remove_file(missing.path().join(files[1].file_name().unwrap())).unwrap();
    let message = open_wal(missing.path()).unwrap_err().to_string();
    assert!(message.contains("segment 2 is missing"), "{message}");

    let first_gone = copy_dir(dir.path());
    fs::remove_file(first_gone.path().join(files[0].file_name().unwrap())).unwrap();
    let message = open_wal(first_gone.path()).unwrap_err().to_string();
    assert!(message.contains("segment 1 is missing"), "{message}");

    let damaged = copy_dir(dir.path());
    let file = OpenOptions::new()
        .write(true)
        .open(damaged.path().join(files[1].file_name().unwrap()))
        .unwrap();
    file.write_all_at(b"X", 20).unwrap();
    drop(file);
    let message = open_wal(damaged.path()).unwrap_err().to_string();
    assert!(
        message.contains("segment header checksum mismatch"),
        "{message}"
    );
}

fn compacted_log(dir: &std::path::Path) -> Vec<Owned> {
    multi_segment_log(dir);
    let (wal, _) = open_wal(dir).unwrap();
    let snapshot: Vec<Owned> = (0..3u64).map(|i| Owned::new(5, 1000 + i, 50)).collect();
    wal.compact(&mut |writer| {
        for r in &snapshot {
            writer.push(kind(r.kind), r.generation, &r.payload)?;
        }
        Ok(())
    })
    .unwrap();
    let mut expected = snapshot;
    for i in 0..2u64 {
        let record = Owned::new(6, 2000 + i, 30);
        record.append_to(&wal);
        wal.sync().unwrap();
        expected.push(record);
    }
    expected
}

#[test]
fn compaction_keeps_the_snapshot_and_what_follows_and_removes_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let expected = compacted_log(dir.path());
    assert_eq!(segments(dir.path()).len(), 1);
    let (wal, records) = open_wal(dir.path()).unwrap();
    assert_eq!(records, expected);
    assert!(wal.live_bytes() < 1000);
}

#[test]
fn a_crash_at_any_step_of_compaction_recovers_a_whole_log() {
    // Step 1: crash while the new segment is being written: a temporary file is left, created
    // but with no header written yet. A file of the same name that is not this log's (here,
    // text) is left alone.
    let dir = tempfile::tempdir().unwrap();
    let (records, _) = synced_log(dir.path(), 50, 40);
    fs::write(dir.path().join("0000000000000002.wal.tmp"), b"").unwrap();
    fs::write(
        dir.path().join("0000000000000003.wal.tmp"),
        b"someone's notes",
    )
    .unwrap();
    let (wal, recovered) = open_wal(dir.path()).unwrap();
    assert_eq!(recovered, records);
    assert_eq!(wal.recovery_report().removed_temps.len(), 1);
    assert!(!dir.path().join("0000000000000002.wal.tmp").exists());
    assert!(dir.path().join("0000000000000003.wal.tmp").exists());
    drop(wal);

    // Step 2: crash after the rename, before the old segments were removed.
    let dir = tempfile::tempdir().unwrap();
    let before = tempfile::tempdir().unwrap();
    multi_segment_log(dir.path());
    let old = segments(dir.path());
    for path in &old {
        fs::copy(path, before.path().join(path.file_name().unwrap())).unwrap();
    }
    let (wal, _) = open_wal(dir.path()).unwrap();
    wal.compact(&mut |writer| writer.push(kind(5), 77, b"the whole state"))
        .unwrap();
    drop(wal);
    for path in &old {
        fs::copy(before.path().join(path.file_name().unwrap()), path).unwrap();
    }
    let (wal, recovered) = open_wal(dir.path()).unwrap();
    assert_eq!(
        recovered,
        vec![Owned {
            kind: 5,
            generation: 77,
            payload: b"the whole state".to_vec()
        }]
    );
    assert_eq!(wal.recovery_report().removed_segments.len(), old.len());
    assert_eq!(segments(dir.path()).len(), 1);
}

#[test]
fn unsynced_records_are_not_durable_until_synced() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_wal(dir.path()).unwrap();
    let start = wal.durable();
    let end = wal.append(kind(1), 1, b"pending").unwrap();
    assert_eq!(wal.durable(), start, "append alone promises nothing");
    wal.sync_through(end).unwrap();
    assert_eq!(wal.durable(), end);
}

#[test]
fn oversized_records_and_bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_wal(dir.path()).unwrap();
    let too_big = vec![1u8; (64 << 10) + 1];
    assert!(matches!(
        wal.append(kind(1), 1, &too_big),
        Err(LogError::RecordTooLarge { .. })
    ));
    drop(wal);
    let bad = WalOptions {
        segment_size: 1000,
        ..WalOptions::default()
    };
    let err = fencekit::Wal::open(dir.path(), fencekit::wal::LogOwner::Fence, bad, &mut |_| {
        Ok(())
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("WalOptions::segment_size"),
        "{err}"
    );
}

#[test]
fn a_zeroed_sector_inside_an_acknowledged_record_is_refused_not_truncated() {
    // Zeros look like a torn write; only the later records' durable-up-to field tells that
    // this record had been synced, so cutting the log here would lose acknowledged records.
    let dir = tempfile::tempdir().unwrap();
    let (_, starts) = synced_log(dir.path(), 12, 1500);
    let segment = segments(dir.path())[0].clone();
    let victim = starts[4].offset();
    let sector = (victim + 600).next_multiple_of(512);
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.write_all_at(&[0u8; 512], sector).unwrap();
    drop(file);
    match open_wal(dir.path()) {
        Err(LogError::Corrupt { offset, reason, .. }) => {
            assert_eq!(offset, victim);
            assert!(reason.contains("had been synced"), "{reason}");
        }
        other => panic!("expected corruption, got {:?}", other.map(|(_, r)| r.len())),
    }
}

/// Every file of `dir` with its bytes, to prove that nothing was touched.
fn snapshot_files(dir: &std::path::Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn inspect(dir: &std::path::Path) -> Result<(fencekit::RecoveryReport, Vec<Owned>), LogError> {
    let mut records = Vec::new();
    let report = fencekit::Wal::inspect(dir, &Default::default(), &mut |r| {
        records.push(Owned::of(&r));
        Ok(())
    })?;
    Ok((report, records))
}

#[test]
fn inspection_reports_a_torn_tail_without_repairing_it() {
    let dir = tempfile::tempdir().unwrap();
    let (records, starts) = synced_log(dir.path(), 6, 1000);
    let segment = segments(dir.path())[0].clone();
    // Tear the last record: its sectors after the first never reached the disk (a power
    // loss during the write).
    let last = starts[records.len() - 1].offset();
    zero_from(&segment, (last + 1).next_multiple_of(512));
    let before = snapshot_files(dir.path());

    // The log is open for writing elsewhere: inspection does not need its lock.
    let (report, seen) = inspect(dir.path()).unwrap();
    assert_eq!(seen, records[..records.len() - 1]);
    let torn = report.torn_tail.clone().expect("the torn tail is reported");
    assert_eq!(torn.offset, last);
    assert_eq!(
        snapshot_files(dir.path()),
        before,
        "inspection changed the log"
    );

    // Opening repairs exactly what inspection reported.
    let (wal, recovered) = open_wal(dir.path()).unwrap();
    assert_eq!(recovered, seen);
    assert_eq!(wal.recovery_report().torn_tail, Some(torn));
    drop(wal);
    let (wal, _) = open_wal(dir.path()).unwrap();
    let wal_report = wal.recovery_report().clone();
    assert_eq!(wal_report.torn_tail, None, "the first open repaired it");
}

#[test]
fn inspection_refuses_damage_and_an_empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(inspect(dir.path()), Err(LogError::Corrupt { .. })));
    assert!(
        fs::read_dir(dir.path()).unwrap().next().is_none(),
        "inspection created a log"
    );
    let (_, starts) = synced_log(dir.path(), 10, 40);
    let segment = segments(dir.path())[0].clone();
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.write_all_at(&[0xFF], starts[3].offset() + 40).unwrap();
    drop(file);
    match inspect(dir.path()) {
        Err(LogError::Corrupt { offset, .. }) => assert_eq!(offset, starts[3].offset()),
        other => panic!("expected corruption, got {:?}", other.map(|(r, _)| r)),
    }
}

#[test]
fn a_hard_linked_file_of_the_log_is_refused() {
    // A second name for a segment (`cp -al` of a live directory) lets another process open
    // the same file through another directory, around this directory's lock.
    let dir = tempfile::tempdir().unwrap();
    synced_log(dir.path(), 5, 40);
    let elsewhere = tempfile::tempdir().unwrap();
    let segment = segments(dir.path())[0].clone();
    fs::hard_link(&segment, elsewhere.path().join("copy.wal")).unwrap();
    let message = open_wal(dir.path()).unwrap_err().to_string();
    assert!(message.contains("hard links"), "{message}");
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    fs::remove_file(elsewhere.path().join("copy.wal")).unwrap();
    open_wal(dir.path()).unwrap();
}

#[test]
fn a_link_planted_at_a_temporary_name_is_never_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = open_wal(dir.path()).unwrap();
    let victim = dir.path().join("..").join(format!(
        "victim-{}",
        dir.path().file_name().unwrap().to_string_lossy()
    ));
    fs::write(&victim, b"precious").unwrap();
    // The name the next segment is created under, before it is renamed into place.
    std::os::unix::fs::symlink(&victim, dir.path().join("0000000000000002.wal.tmp")).unwrap();
    // Fill segment 1 so that the log rolls to segment 2.
    for i in 0..1000u64 {
        Owned::new(1, i, 200).append_to(&wal);
    }
    wal.sync().unwrap();
    assert!(segments(dir.path()).len() >= 2, "the log rolled");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    fs::remove_file(&victim).unwrap();
}
