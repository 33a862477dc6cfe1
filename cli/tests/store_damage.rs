//! `fencekit store`'s fence log, damaged (DESIGN.md I6 and the threat model's disk paragraph):
//! the store keeps its fence in `<data>/fence`, one mark (the job ledger's) advanced by every
//! new leader. A damaged log must either make the store refuse to start, saying which file,
//! or the store must start and still answer a deposed leader's token (the one just below the
//! acknowledged mark) with 409 stale. `fencekit wal inspect` must refuse the same logs, change
//! nothing, and reach the same verdict on a read-only copy read by an unprivileged user.
//!
//! The store's log is made by a real `fencekit store` process with `--segment-size 65536`,
//! through its HTTP API (about 2,400 new leaders' first requests, once per run), so that it
//! spans three segments; every test damages a copy of that data directory and starts a real
//! store on it. The kernel's damage suite (core/tests/kernel/damage.rs) goes through the same
//! damage on every kind of log.

mod common;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Daemon, FENCEKIT, free_port, get, post};
use fencekit::wal::LogOwner;
use fencekit::{Fence, FenceOptions, Token, Verdict, WalOptions};

/// Segments of the store's log when built.
const SEGMENTS: u64 = 3;
/// The store's segment size, the smallest, so that the log spans several.
const SEGMENT_SIZE: &str = "65536";
/// The unprivileged user the read-only inspection runs as (`nobody`).
const NOBODY: u32 = 65534;

fn small_wal() -> WalOptions {
    WalOptions {
        segment_size: SEGMENT_SIZE.parse().expect("a number"),
        ..WalOptions::default()
    }
}

/// A store's data directory built once per run.
#[derive(Debug)]
struct Template {
    /// The data directory: `fence/` and the ledger.
    data: PathBuf,
    /// Its `fence/`.
    fence: PathBuf,
    /// The last mark the store acknowledged.
    acked: Token,
    /// The superblock as it was when the log first had 2, 3 segments.
    superblocks: BTreeMap<u64, Vec<u8>>,
    /// A copy of `fence/` taken when the last segment held half its final marks.
    earlier: PathBuf,
}

/// Where the templates live; removed when the test process exits.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_root() {
        if let Some(root) = ROOT.get() {
            let _ = fs::remove_dir_all(root);
        }
    }
    ROOT.get_or_init(|| {
        let root = tempfile::Builder::new()
            .prefix("fencekit-store-damage-")
            .tempdir()
            .expect("temp dir")
            .keep();
        // SAFETY: registers a function that only removes a directory tree at exit.
        unsafe { libc::atexit(remove_root) };
        root
    })
}

fn segment_count(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count() as u64
}

/// Grows an embedded fence's log in `dir` (many keys) until it has [`SEGMENTS`] segments and
/// 50 more marks, each advance synced.
fn grow_fence(dir: &Path) {
    let fence = Fence::open(
        dir,
        FenceOptions {
            max_resources: 4096,
            compact_after_bytes: 1 << 40,
            wal: small_wal(),
            owner: LogOwner::Fence,
        },
    )
    .expect("open the fence's log");
    let mut past = 0;
    for i in 1.. {
        let mut key = format!("resource/{i:05}/").into_bytes();
        key.resize(240, b'k');
        let token = Token::from_parts(i, 1).expect("token");
        let verdict = fence.check_key(&key, token).expect("advance");
        assert!(matches!(verdict, Verdict::Advanced { .. }), "{verdict:?}");
        if segment_count(dir) == SEGMENTS {
            past += 1;
            if past == 50 {
                break;
            }
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create");
    for entry in fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

/// Makes a store's data directory in `base` with a real store process: a new leader's first
/// request after another (each making a new mark durable) until the log has [`SEGMENTS`]
/// segments and `extra` more marks.
fn build_store(base: &Path, extra: u64) -> Template {
    let data = base.join("data");
    let fence = data.join("fence");
    let earlier = base.join("earlier");
    let Started::Serving(store, addr) = start(&data) else {
        panic!("a store on an empty directory did not start");
    };
    let mut superblocks = BTreeMap::new();
    let mut acked = None;
    let mut past = 0;
    for generation in 1.. {
        assert!(
            generation < 10_000,
            "{} did not grow to {SEGMENTS} segments of {SEGMENT_SIZE} bytes",
            fence.display()
        );
        let before = segment_count(&fence);
        let holder = 1 + generation % 3;
        let (code, body) = post(
            &addr,
            &format!("/begin?job=build&run={generation}&holder={holder}&generation={generation}"),
        );
        assert_eq!(code, 200, "{body}");
        acked = Some(Token::from_parts(generation, holder).expect("token"));
        let now = segment_count(&fence);
        if now != before {
            let superblock = fs::read(fence.join("superblock")).expect("superblock");
            superblocks.insert(now, superblock);
        }
        if now == SEGMENTS {
            past += 1;
            if past == extra / 2 {
                copy_tree(&fence, &earlier);
            }
            if past == extra {
                break;
            }
        }
    }
    // Stopped as an operator (or systemd) stops it: SIGTERM, then wait for it to exit.
    stop_gracefully(store);
    assert_eq!(segment_count(&fence), SEGMENTS);
    Template {
        data,
        fence,
        acked: acked.expect("advanced"),
        superblocks,
        earlier,
    }
}

fn stop_gracefully(mut store: Daemon) {
    let pid = store.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success(), "SIGTERM to the store");
    let status = store.0.wait().expect("wait for the store");
    assert!(status.success(), "the store stopped with {status}");
}

/// Our store.
fn ours() -> &'static Template {
    static OURS: OnceLock<Template> = OnceLock::new();
    OURS.get_or_init(|| build_store(&root().join("ours"), 50))
}

/// Another store's log, with more marks than ours: a record of it lies at each offset of ours.
fn another_store() -> &'static Path {
    static OTHER: OnceLock<Template> = OnceLock::new();
    &OTHER
        .get_or_init(|| build_store(&root().join("another-store"), 60))
        .fence
}

/// A fence's log (an embedded fence's, many keys).
fn a_fence() -> &'static Path {
    static FENCE: OnceLock<PathBuf> = OnceLock::new();
    FENCE.get_or_init(|| {
        let dir = root().join("a-fence");
        grow_fence(&dir);
        dir
    })
}

/// What starting a store led to.
enum Started {
    /// It exited, saying this.
    Refused(String),
    /// It serves at this address.
    Serving(Daemon, String),
}

fn start(data: &Path) -> Started {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(FENCEKIT)
        .args([
            "store",
            "--data",
            &data.to_string_lossy(),
            "--listen",
            &addr,
            "--segment-size",
            SEGMENT_SIZE,
            "--insecure",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fencekit store");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut said = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                stderr.read_to_string(&mut said).expect("stderr");
            }
            assert!(!status.success(), "the store exited by itself: {said}");
            assert!(!said.contains("panicked"), "{said}");
            return Started::Refused(said.trim().to_owned());
        }
        if std::net::TcpStream::connect(&addr).is_ok() && get(&addr, "/healthz").0 == 200 {
            return Started::Serving(Daemon(child), addr);
        }
        assert!(
            Instant::now() < deadline,
            "the store neither served nor exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asks a serving store about the acknowledged mark; lists what went back.
fn check_store(addr: &str, acked: Token) -> Vec<String> {
    let mut went_back = Vec::new();
    let (generation, holder) = (acked.generation.get(), acked.holder.get());
    let stale = generation - 1;
    let (code, body) = post(
        addr,
        &format!("/begin?job=check&run=1&holder={holder}&generation={stale}"),
    );
    if code != 409 || !body.contains("\"stale\"") {
        went_back.push(format!(
            "generation {stale}, below the acknowledged {generation}, answered {code} {body}"
        ));
    }
    let (code, body) = post(
        addr,
        &format!("/begin?job=check&run=2&holder={holder}&generation={generation}"),
    );
    if code != 200 {
        went_back.push(format!(
            "the acknowledged generation {generation} answered {code} {body}"
        ));
    }
    went_back
}

/// Every file under `dir`: path, bytes, modification time and mode.
type Files = Vec<(PathBuf, Vec<u8>, i64, i64, u32)>;

fn files(dir: &Path) -> Files {
    let mut found = Files::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            found.extend(files(&entry.path()));
        } else {
            found.push((
                entry.path(),
                fs::read(entry.path()).expect("read"),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.mode(),
            ));
        }
    }
    found.sort();
    found
}

/// `fencekit wal inspect DIR`, as the user `uid` if given: success and what it said, with
/// `DIR` written as `<log>` so that copies compare.
fn wal_inspect(dir: &Path, uid: Option<u32>) -> (bool, String) {
    let mut command = Command::new(FENCEKIT);
    command.args(["wal", "inspect", "--summary", &dir.to_string_lossy()]);
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let out = command.output().expect("run fencekit wal inspect");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!said.contains("panicked"), "{said}");
    (
        out.status.success(),
        said.replace(&dir.display().to_string(), "<log>"),
    )
}

/// Inspects `fence` with the command, checking that nothing changed and that a read-only copy
/// read by an unprivileged user gets the same verdict. Root ignores file modes: the copy is
/// read by `nobody`, for whom 0444 files in a 0555 directory cannot be written.
fn inspect(fence: &Path, label: &str) -> Result<String, String> {
    let before = files(fence);
    let (ok, said) = wal_inspect(fence, None);
    assert!(
        files(fence) == before,
        "{label}: `fencekit wal inspect` changed a file (bytes, mtime or mode)"
    );
    if fence.is_dir() {
        let copy = tempfile::tempdir().expect("temp dir");
        fs::set_permissions(copy.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let ro = copy.path().join("fence");
        copy_tree(fence, &ro);
        for entry in fs::read_dir(&ro).expect("list") {
            let path = entry.expect("entry").path();
            fs::set_permissions(path, fs::Permissions::from_mode(0o444)).expect("chmod");
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).expect("chmod");
        // SAFETY: getuid has no preconditions.
        let uid = (unsafe { libc::getuid() } == 0).then_some(NOBODY);
        let read_only = wal_inspect(&ro, uid);
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(
            read_only,
            (ok, said.clone()),
            "{label}: inspecting a read-only copy as an unprivileged user differs"
        );
    }
    if ok { Ok(said) } else { Err(said) }
}

/// A copy of our store's data directory, to damage and then start a store on.
struct Damaged {
    what: String,
    tmp: tempfile::TempDir,
    data: PathBuf,
    fence: PathBuf,
}

impl Damaged {
    fn new(what: impl Into<String>) -> Damaged {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        copy_tree(&ours().data, &data);
        let fence = data.join("fence");
        Damaged {
            what: what.into(),
            tmp,
            data,
            fence,
        }
    }

    fn segment(&self, number: u64) -> PathBuf {
        segment_in(&self.fence, number)
    }

    fn superblock(&self) -> PathBuf {
        self.fence.join("superblock")
    }

    fn label(&self) -> String {
        format!("store, {}", self.what)
    }

    /// Inspects, then starts a store: inspection's result, and the store's (what went back,
    /// or why it refused to start).
    fn judge(&self) -> (Result<String, String>, Result<Vec<String>, String>) {
        let inspected = inspect(&self.fence, &self.label());
        let started = match start(&self.data) {
            Started::Refused(said) => Err(said),
            Started::Serving(_store, addr) => Ok(check_store(&addr, ours().acked)),
        };
        (inspected, started)
    }

    /// The store refuses to start and inspection refuses, both naming one of `named`.
    fn expect_refused(&self, named: &[&Path]) {
        let label = self.label();
        let (inspected, started) = self.judge();
        let said = match started {
            Err(said) => said,
            Ok(went_back) => panic!("{label}: the store started (went back: {went_back:?})"),
        };
        let names = |m: &str| named.iter().any(|p| m.contains(&p.display().to_string()));
        assert!(
            names(&said),
            "{label}: refused, not naming {named:?}: {said}"
        );
        assert_eq!(said.lines().count(), 1, "{label}: one line: {said}");
        match inspected {
            // Inspection's message has the directory as `<log>`: compare file names.
            Err(inspection) => assert!(
                named.iter().any(|p| {
                    let relative = p.strip_prefix(&self.fence).unwrap_or(p);
                    inspection.contains(&format!("<log>/{}", relative.display()))
                        || (relative.as_os_str().is_empty() && inspection.contains("<log>"))
                }),
                "{label}: inspection refused, not naming {named:?}: {inspection}"
            ),
            Ok(report) => {
                panic!("{label}: the store refuses ({said}), inspection accepts: {report}")
            }
        }
        eprintln!("{label}: refused: {said}");
    }

    /// The store starts, inspection accepts, and nothing acknowledged went back.
    fn expect_kept(&self) {
        let label = self.label();
        let (inspected, started) = self.judge();
        match started {
            Ok(went_back) => assert!(went_back.is_empty(), "{label}: went back: {went_back:?}"),
            Err(said) => panic!("{label}: refused: {said}"),
        }
        if let Err(said) = inspected {
            panic!("{label}: the store starts, yet inspection refuses: {said}");
        }
        eprintln!("{label}: started, nothing acknowledged went back");
    }
}

fn segment_in(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}.wal"))
}

/// The records of a segment file: where each one starts and how many bytes it takes.
fn records(path: &Path) -> Vec<(u64, u64)> {
    let data = fs::read(path).expect("read segment");
    let mut at = 128;
    let mut found = Vec::new();
    while at + 32 <= data.len() && data[at..at + 32].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(data[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let taken = (32 + len).next_multiple_of(8);
        found.push((at as u64, taken as u64));
        at += taken;
    }
    assert!(found.len() > 4, "{} holds too few records", path.display());
    found
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).expect("open");
    file.write_all_at(bytes, offset).expect("write");
}

fn read_at(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len as usize];
    fs::File::open(path)
        .expect("open")
        .read_exact_at(&mut bytes, offset)
        .expect("read");
    bytes
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open")
        .set_len(len)
        .expect("truncate");
}

#[test]
fn a_segment_of_another_log_is_refused() {
    for (stranger, source) in [("another store", another_store()), ("a fence", a_fence())] {
        for (number, place) in [(1, "base"), (2, "middle"), (SEGMENTS, "last")] {
            let log = Damaged::new(format!("{place} segment from {stranger}"));
            let victim = log.segment(number);
            fs::copy(segment_in(source, number), &victim).expect("copy");
            log.expect_refused(&[&victim]);
        }
    }
}

#[test]
fn a_record_of_another_store_at_the_same_offset_is_refused() {
    // The other store's log holds the same key's marks: its records lie at the same offsets.
    for (number, pick) in [
        (2, "a middle"),
        (SEGMENTS, "a middle"),
        (SEGMENTS, "the last"),
    ] {
        let log = Damaged::new(format!(
            "{pick} record of segment {number} from another store"
        ));
        let victim = log.segment(number);
        let ours = records(&victim);
        let (at, len) = if pick == "the last" {
            ours[ours.len() - 1]
        } else {
            ours[ours.len() / 2]
        };
        let theirs = read_at(&segment_in(another_store(), number), at, len);
        assert_eq!(
            records(&segment_in(another_store(), number))
                .iter()
                .find(|r| r.0 == at),
            Some(&(at, len)),
            "a record of the other store lies there"
        );
        write_at(&victim, at, &theirs);
        log.expect_refused(&[&victim]);
    }
}

#[test]
fn a_segment_cut_short_is_refused() {
    for (number, cut) in [
        (2, "at a middle record"),
        (SEGMENTS, "at a middle record"),
        (SEGMENTS, "after its last record"),
        (2, "to nothing"),
        (SEGMENTS, "to nothing"),
    ] {
        let log = Damaged::new(format!("segment {number} cut {cut}"));
        let victim = log.segment(number);
        let ours = records(&victim);
        let end = match cut {
            "to nothing" => 0,
            "after its last record" => ours[ours.len() - 1].0 + ours[ours.len() - 1].1,
            _ => ours[ours.len() / 2].0,
        };
        truncate(&victim, end);
        log.expect_refused(&[&victim]);
    }
}

#[test]
fn a_zeroed_record_before_the_tail_is_refused() {
    for (number, pick) in [(1, "the last"), (2, "a middle"), (SEGMENTS, "a middle")] {
        let log = Damaged::new(format!("{pick} record of segment {number} zeroed"));
        let victim = log.segment(number);
        let ours = records(&victim);
        let (at, len) = if pick == "the last" {
            ours[ours.len() - 1]
        } else {
            ours[ours.len() / 2]
        };
        write_at(&victim, at, &vec![0; len as usize]);
        log.expect_refused(&[&victim]);
    }
}

#[test]
fn a_deleted_file_is_refused() {
    for (what, gone) in [
        ("the last segment", vec![SEGMENTS]),
        ("a middle segment", vec![2]),
        ("every segment", (1..=SEGMENTS).collect()),
    ] {
        let log = Damaged::new(format!("{what} deleted"));
        for &number in &gone {
            fs::remove_file(log.segment(number)).expect("remove");
        }
        log.expect_refused(&[&log.segment(gone[0])]);
    }
    let log = Damaged::new("superblock deleted");
    fs::remove_file(log.superblock()).expect("remove");
    log.expect_refused(&[&log.superblock()]);
}

/// Starts a store on `data` and says why it refused; panics if it served.
fn refusal(data: &Path, label: &str) -> String {
    match start(data) {
        Started::Refused(said) => said,
        Started::Serving(_store, addr) => panic!(
            "{label}: the store started (went back: {:?})",
            check_store(&addr, ours().acked)
        ),
    }
}

#[test]
fn an_emptied_deleted_or_replaced_fence_directory_is_refused() {
    // The fence's log alone cannot tell that it was there (recovery.rs rule 1: an empty
    // directory is a new log); the store records its fence's log id beside it, in
    // <data>/fence.id, and refuses a fence directory holding another log.
    let emptied = Damaged::new("every file of its fence directory deleted");
    for entry in fs::read_dir(&emptied.fence).expect("list") {
        fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    assert!(inspect(&emptied.fence, &emptied.label()).is_err());
    assert!(
        files(&emptied.fence).is_empty(),
        "inspection created something"
    );
    let deleted = Damaged::new("its fence directory deleted");
    fs::remove_dir_all(&deleted.fence).expect("remove");
    let replaced = Damaged::new("its fence directory replaced by another store's");
    fs::remove_dir_all(&replaced.fence).expect("remove");
    copy_tree(another_store(), &replaced.fence);
    for log in [emptied, deleted, replaced] {
        let said = refusal(&log.data, &log.label());
        assert!(said.contains("fence.id"), "{}: {said}", log.label());
        assert!(
            said.contains("deleted, emptied or replaced"),
            "{}: {said}",
            log.label()
        );
        assert_eq!(said.lines().count(), 1, "{}: {said}", log.label());
    }
}

/// A FIFO would block the open for ever, a link or device lead elsewhere: anything at the
/// ledger's paths (its database, SQLite's files beside it, the old JSON-lines ledger it
/// imports) that is not a regular file makes the store refuse at once, naming it.
#[test]
fn a_ledger_that_is_not_a_regular_file_is_refused_at_once() {
    for name in [
        "ledger.sqlite",
        "ledger.sqlite-wal",
        "ledger.sqlite-journal",
        "ledger.jsonl",
    ] {
        let log = Damaged::new(format!("{name} replaced by a FIFO"));
        let path = log.data.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove: {e}"),
            _ => {}
        }
        let made = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
        assert!(made.success());
        let said = refusal(&log.data, &log.label());
        assert!(said.contains("not a regular file"), "{name}: {said}");
        assert!(said.contains(&path.display().to_string()), "{name}: {said}");
    }
}

#[test]
fn an_older_or_foreign_superblock_is_refused() {
    let log = Damaged::new("superblock restored from when the log had 2 segments");
    fs::write(log.superblock(), &ours().superblocks[&2]).expect("write");
    // The superblock cannot know it is old: the segment it does not list is named.
    log.expect_refused(&[&log.superblock(), &log.segment(SEGMENTS)]);

    let log = Damaged::new("superblock of another store");
    fs::copy(another_store().join("superblock"), log.superblock()).expect("copy");
    log.expect_refused(&[&log.superblock(), &log.segment(1)]);

    let log = Damaged::new("superblock of a fence");
    fs::copy(a_fence().join("superblock"), log.superblock()).expect("copy");
    // The owner check comes first, and names the directory.
    log.expect_refused(&[&log.fence]);

    let log = Damaged::new("one superblock copy from another store");
    let theirs = read_at(&another_store().join("superblock"), 512, 512);
    write_at(&log.superblock(), 512, &theirs);
    log.expect_refused(&[&log.superblock()]);
}

#[test]
fn one_damaged_superblock_copy_still_starts_and_all_four_are_refused() {
    for copy in 0..4 {
        let log = Damaged::new(format!("superblock copy {copy} damaged"));
        write_at(&log.superblock(), copy * 512 + 20, b"rot");
        log.expect_kept();
    }
    let log = Damaged::new("every superblock copy damaged");
    for copy in 0..4 {
        write_at(&log.superblock(), copy * 512 + 20, b"rot");
    }
    log.expect_refused(&[&log.superblock()]);
}

#[test]
fn swapped_renamed_and_extra_segments_are_refused() {
    let log = Damaged::new("segments 2 and 3 swapped");
    let (a, b) = (log.segment(2), log.segment(3));
    let aside = log.fence.join("aside");
    fs::rename(&a, &aside).expect("rename");
    fs::rename(&b, &a).expect("rename");
    fs::rename(&aside, &b).expect("rename");
    log.expect_refused(&[&a, &b]);

    let log = Damaged::new("the last segment renamed to the next number");
    let next = log.segment(SEGMENTS + 1);
    fs::rename(log.segment(SEGMENTS), &next).expect("rename");
    log.expect_refused(&[&log.segment(SEGMENTS), &next]);

    let log = Damaged::new("a copy of segment 2 added past the last");
    let extra = log.segment(SEGMENTS + 1);
    fs::copy(log.segment(2), &extra).expect("copy");
    log.expect_refused(&[&extra]);
}

#[test]
fn temporary_files_that_are_not_ours_are_left_alone() {
    let log = Damaged::new("temporary files of another log or no log");
    let strangers = [
        ("0000000000000009.wal.tmp", b"someone's notes".to_vec()),
        (
            "0000000000000004.wal.tmp",
            fs::read(segment_in(another_store(), 2)).expect("read"),
        ),
        (
            "superblock.tmp",
            fs::read(another_store().join("superblock")).expect("read"),
        ),
    ];
    for (name, bytes) in &strangers {
        fs::write(log.fence.join(name), bytes).expect("write");
    }
    log.expect_kept();
    for (name, bytes) in &strangers {
        assert_eq!(
            &fs::read(log.fence.join(name)).expect("read"),
            bytes,
            "{name} changed"
        );
    }
}

#[test]
fn an_older_copy_of_the_last_segment_is_refused() {
    let log = Damaged::new("last segment restored from an earlier copy");
    fs::copy(segment_in(&ours().earlier, SEGMENTS), log.segment(SEGMENTS)).expect("copy");
    let (_, started) = log.judge();
    if let Ok(went_back) = started {
        assert!(
            went_back.is_empty(),
            "{}: went back: {went_back:?}",
            log.label()
        );
    }
}

#[test]
fn a_second_store_is_refused_while_one_serves_even_after_deleting_lock_files() {
    let log = Damaged::new("a second store on the same data");
    let Started::Serving(_first, addr) = start(&log.data) else {
        panic!("the first store did not start");
    };
    // The lock is the directory's own: deleting a file named like a lock must not get around
    // it (and not "*lock*", which would take the superblock).
    for dir in [&log.data, &log.fence] {
        for entry in fs::read_dir(dir).expect("list") {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .to_lowercase();
            if name == "lock" || name.starts_with("lock.") || name.ends_with(".lock") {
                fs::remove_file(path).expect("remove");
            }
        }
    }
    match start(&log.data) {
        Started::Refused(said) => {
            assert!(said.contains("is locked by another open log"), "{said}");
            assert!(said.contains(&log.fence.display().to_string()), "{said}");
        }
        Started::Serving(..) => panic!("a second store serves the same data"),
    }
    // Inspection takes no lock: it reads the log while the store serves.
    let inspected = inspect(&log.fence, &log.label());
    assert!(inspected.is_ok(), "{inspected:?}");
    assert!(check_store(&addr, ours().acked).is_empty());
}

#[test]
fn a_data_directory_moved_aside_under_a_serving_store_makes_it_refuse_advances() {
    for then in [
        "its fence directory moved aside and an empty one made",
        "the data directory moved aside and a copy served by a second store",
    ] {
        let log = Damaged::new(format!("while serving, {then}"));
        let Started::Serving(_first, addr) = start(&log.data) else {
            panic!("the store did not start");
        };
        let aside = log.tmp.path().join("aside");
        let mut second = None;
        if then.starts_with("its fence") {
            fs::rename(&log.fence, &aside).expect("move aside");
            fs::create_dir(&log.fence).expect("mkdir");
        } else {
            // The whole data directory: the ledger has a lock of its own, on its file.
            fs::rename(&log.data, &aside).expect("move aside");
            copy_tree(&aside, &log.data);
            match start(&log.data) {
                Started::Serving(store, second_addr) => second = Some((store, second_addr)),
                Started::Refused(said) => panic!("a second store on the copy: {said}"),
            }
        }
        let next = ours().acked.generation.get() + 1;
        let (code, body) = post(
            &addr,
            &format!("/begin?job=moved&run=1&holder=3&generation={next}"),
        );
        assert_eq!(code, 503, "{}: {body}", log.label());
        assert!(
            body.contains(&log.fence.display().to_string()),
            "{}: {body}",
            log.label()
        );
        eprintln!("{}: the first store refuses: {body}", log.label());
        if let Some((_, second_addr)) = &second {
            let (code, body) = post(
                second_addr,
                &format!("/begin?job=moved&run=1&holder=3&generation={next}"),
            );
            assert_eq!(code, 200, "the second store serves the copy: {body}");
        }
    }
}

/// Starts a store on `data` that must serve.
fn serving(data: &Path) -> (Daemon, String) {
    match start(data) {
        Started::Serving(store, addr) => (store, addr),
        Started::Refused(said) => panic!("the store did not start: {said}"),
    }
}

#[test]
fn an_older_copy_of_its_own_fence_below_a_refusal_in_the_ledger_is_refused() {
    // The same log id, restored from a backup taken at generation 1: fence.id cannot tell.
    // The ledger can: it holds a completion refused as stale at generation 3, and it
    // witnessed the mark at 5 (the generation that refused it).
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let backup = tmp.path().join("fence-at-1");
    let begin = |addr: &str, generation: u64| {
        post(
            addr,
            &format!("/begin?job=j&run={generation}&holder=1&generation={generation}"),
        )
    };
    let said = restored_from_backup(
        &data,
        &backup,
        |addr| assert_eq!(begin(addr, 1).0, 200),
        |addr| {
            assert_eq!(begin(addr, 5).0, 200);
            let (code, body) = post(addr, "/complete?job=j&run=3&holder=1&generation=3");
            assert_eq!(code, 409, "{body}");
        },
        "an older copy of its own fence",
    );
    assert!(
        said.contains("went back") && said.contains("generation 5"),
        "{said}"
    );
}

/// Serves `data`, runs `before`, stops and copies the fence to `backup`; serves again, runs
/// `after`, stops, puts the backup back in the fence's place, and returns what the store
/// says when it refuses to start (`label` names the damage).
fn restored_from_backup(
    data: &Path,
    backup: &Path,
    before: impl Fn(&str),
    after: impl Fn(&str),
    label: &str,
) -> String {
    let (store, addr) = serving(data);
    before(&addr);
    stop_gracefully(store);
    copy_tree(&data.join("fence"), backup);
    let (store, addr) = serving(data);
    after(&addr);
    stop_gracefully(store);
    fs::remove_dir_all(data.join("fence")).expect("remove");
    copy_tree(backup, &data.join("fence"));
    refusal(data, label)
}

#[test]
fn an_older_copy_of_its_own_fence_below_an_advance_no_entry_recorded_is_refused() {
    // A new leader's `begin` moves the mark and records no entry; restoring the fence from
    // before it would let the deposed leader's completion land. The ledger witnessed the
    // advance, so the store refuses to start.
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let ok = |addr: &str, path: &str| assert_eq!(post(addr, path).0, 200, "{path}");
    let said = restored_from_backup(
        &data,
        &tmp.path().join("fence-at-9"),
        |addr| {
            ok(addr, "/begin?job=r&run=1&holder=1&generation=9");
            ok(addr, "/complete?job=r&run=0&holder=1&generation=9");
        },
        |addr| ok(addr, "/begin?job=r&run=1&holder=2&generation=10"),
        "a copy of its fence from before an advance",
    );
    assert!(
        said.contains("went back") && said.contains("generation 10"),
        "{said}"
    );
}

#[test]
fn files_beside_the_fence_are_never_followed_or_read_blindly() {
    // A link planted where the store writes its fence's id is not written through, and a
    // FIFO where it reads it does not hang it.
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    fs::create_dir_all(&data).expect("mkdir");
    let victim = tmp.path().join("victim");
    fs::write(&victim, "precious").expect("write");
    std::os::unix::fs::symlink(&victim, data.join("fence.id.tmp")).expect("symlink");
    let (store, _addr) = serving(&data);
    stop_gracefully(store);
    assert_eq!(fs::read_to_string(&victim).expect("read"), "precious");
    assert!(
        fs::symlink_metadata(data.join("fence.id"))
            .expect("fence.id")
            .file_type()
            .is_file()
    );
    fs::remove_file(data.join("fence.id")).expect("remove");
    let made = Command::new("mkfifo")
        .arg(data.join("fence.id"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let said = refusal(&data, "fence.id a FIFO");
    assert!(said.contains("not a regular file"), "{said}");
}
