//! The damage suite (DESIGN.md I6 and the threat model's disk paragraph): real logs of each
//! kind, a fence's, a node's Raft log and a store's fence, with segments of 64 KiB so that
//! each spans five, damaged the ways an operator or an attacker with file access would, one
//! test per kind of damage. A damaged log must either be refused, by opening and by
//! [`Wal::inspect`] alike, with an error naming the damaged file, or open with nothing
//! acknowledged gone back: every acknowledged fence mark still fences the token just below
//! it (checked with [`Fence::check`]), and a node's term, vote, commit and entries are all
//! still there.
//!
//! Every damaged directory is inspected before it is opened, and inspection is checked to
//! change nothing (bytes, modification times, and no write-side call on its disk at all) and
//! to reach the same verdict on a read-only copy (files 0444, directory 0555) read by an
//! unprivileged child process: the tests run as root, and root ignores file modes.
//!
//! Building a log takes about a thousand fdatasyncs, so each log is built once per run (two
//! of each kind: ours, and another to take pieces from) and every test damages a copy.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use fencekit::disk::{Disk, DiskFile, DiskHandle, DiskLock, OsDisk};
use fencekit::raft_storage::{Identity, RaftStorage};
use fencekit::wal::LogOwner;
use fencekit::{
    ClusterId, ErrorKind, Fence, FenceOptions, NodeError, NodeId, RecoveryReport, Token, Verdict,
    Wal,
};
use raft::Storage as _;
use raft::eraftpb::{Entry, HardState};

use crate::support::small_wal;

/// Segments every log has when built.
const SEGMENTS: usize = 5;
/// Fence keys are long, so that a segment fills in a couple of hundred advances.
const KEY_LEN: usize = 240;
const ROLE: &str = "FENCEKIT_DAMAGE_CHILD";
const DIR: &str = "FENCEKIT_DAMAGE_DIR";
const KIND: &str = "FENCEKIT_DAMAGE_KIND";
/// The unprivileged user the read-only inspection runs as (`nobody`).
const NOBODY: u32 = 65534;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A fence embedded in a host's storage.
    Fence,
    /// A node's Raft log.
    Node,
    /// A `fencekit store`'s fence: the same fence, owned as a store's (with many keys here;
    /// cli/tests/store_damage.rs damages the single-key log of a real store process).
    Store,
}

const KINDS: [Kind; 3] = [Kind::Fence, Kind::Node, Kind::Store];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Fence => "fence",
            Kind::Node => "node",
            Kind::Store => "store",
        }
    }

    fn parse(name: &str) -> Kind {
        KINDS
            .into_iter()
            .find(|k| k.name() == name)
            .expect("a kind")
    }
}

/// Runs `test` for each kind of log, all of them even when one fails, then fails naming them.
fn each_kind(test: impl Fn(Kind)) {
    let failed: Vec<Kind> = KINDS
        .into_iter()
        .filter(|&kind| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(kind))).is_err()
        })
        .collect();
    assert!(failed.is_empty(), "failed for the logs of {failed:?}");
}

/// Which log of a kind: the one a test damages, or another one to take pieces from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Which {
    Ours,
    Other,
}

/// A node log of ours is node 1 of cluster 7; the other one is node 1 of cluster 8.
fn node_identity(which: Which) -> Identity {
    Identity {
        cluster: ClusterId::new(if which == Which::Ours { 7 } else { 8 }),
        node: NodeId::new(1).unwrap(),
    }
}

fn fence_options(kind: Kind) -> FenceOptions {
    FenceOptions {
        max_resources: 4096,
        // Never compact: the log must keep its five segments.
        compact_after_bytes: 1 << 40,
        wal: small_wal(),
        owner: if kind == Kind::Store {
            LogOwner::Store
        } else {
            LogOwner::Fence
        },
    }
}

/// What was acknowledged when a log was built.
#[derive(Debug, Clone)]
enum Acked {
    /// Each key's mark.
    Marks(BTreeMap<Vec<u8>, Token>),
    /// A node's last synced hard state and last entry.
    Raft { hard_state: HardState, last: u64 },
}

/// A log built once per run.
#[derive(Debug)]
struct Template {
    dir: PathBuf,
    acked: Acked,
    /// The superblock file as it was when the log first had 2, 3, ... segments.
    superblocks: BTreeMap<usize, Vec<u8>>,
    /// A copy of the whole log taken a few writes after it rolled to its next-to-last segment.
    mid: PathBuf,
    /// A copy of the whole log taken when its last segment held only part of its records.
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
            .prefix("fencekit-damage-")
            .tempdir()
            .unwrap()
            .keep();
        // SAFETY: registers a function that only removes a directory tree at exit.
        unsafe { libc::atexit(remove_root) };
        root
    })
}

fn template(kind: Kind, which: Which) -> &'static Template {
    static TEMPLATES: [OnceLock<Template>; 6] = [const { OnceLock::new() }; 6];
    let slot =
        KINDS.iter().position(|&k| k == kind).unwrap() * 2 + (which == Which::Other) as usize;
    TEMPLATES[slot].get_or_init(|| build(kind, which))
}

fn segment_count(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count()
}

fn copy_files(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Runs `step` (each one write, acknowledged: synced) until the log has [`SEGMENTS`]
/// segments, keeping the superblock at each roll and a copy of the whole log (`mid`) a few
/// writes after the roll to the next-to-last segment; then `tail` more steps, with a copy of
/// the whole log (`earlier`) taken halfway. Returns the superblocks.
fn grow(
    dir: &Path,
    mid: &Path,
    earlier: &Path,
    tail: u64,
    step: &mut dyn FnMut(u64),
) -> BTreeMap<usize, Vec<u8>> {
    let mut superblocks = BTreeMap::new();
    let mut i = 0;
    let mut one = |superblocks: &mut BTreeMap<usize, Vec<u8>>| {
        let before = segment_count(dir);
        step(i);
        i += 1;
        let now = segment_count(dir);
        if now != before {
            superblocks.insert(now, fs::read(dir.join("superblock")).unwrap());
        }
    };
    while segment_count(dir) < SEGMENTS - 1 {
        one(&mut superblocks);
    }
    for _ in 0..3 {
        one(&mut superblocks);
    }
    copy_files(dir, mid);
    while segment_count(dir) < SEGMENTS {
        one(&mut superblocks);
    }
    for _ in 0..tail / 2 {
        one(&mut superblocks);
    }
    copy_files(dir, earlier);
    for _ in tail / 2..tail {
        one(&mut superblocks);
    }
    assert_eq!(
        segment_count(dir),
        SEGMENTS,
        "the tail must fit the last segment"
    );
    superblocks
}

fn key(i: u64) -> Vec<u8> {
    let mut key = format!("resource/{i:05}/").into_bytes();
    key.resize(KEY_LEN, b'k');
    key
}

fn short(key: &[u8]) -> String {
    String::from_utf8_lossy(&key[..key.len().min(16)]).into_owned()
}

fn build(kind: Kind, which: Which) -> Template {
    let base = root().join(format!("{}-{which:?}", kind.name()));
    let dir = base.join("log");
    let mid = base.join("mid");
    let earlier = base.join("earlier");
    let (acked, superblocks) = match kind {
        Kind::Fence | Kind::Store => {
            let fence = Fence::open(&dir, fence_options(kind)).unwrap();
            let mut marks = BTreeMap::new();
            // Most advances are of a key of their own, so that losing any record loses a
            // mark; every eighth advances one hot key, the usual leader-change pattern.
            let superblocks = grow(&dir, &mid, &earlier, 40, &mut |i| {
                let key = if i % 8 == 7 { b"hot".to_vec() } else { key(i) };
                let token = Token::from_parts(2 + i, 1 + i % 3).unwrap();
                let verdict = fence.check_key(&key, token).unwrap();
                assert!(matches!(verdict, Verdict::Advanced { .. }), "{verdict:?}");
                marks.insert(key, token);
            });
            (Acked::Marks(marks), superblocks)
        }
        Kind::Node => {
            let identity = node_identity(which);
            let mut s = RaftStorage::open(&dir, identity, small_wal()).unwrap();
            let voters = [1, 2, 3].map(|n| NodeId::new(n).unwrap());
            s.bootstrap(identity, &voters).unwrap();
            let mut hard_state = HardState::default();
            let mut last = 0;
            // Each step a new entry, and a new term (and vote) every fourth: each synced.
            let superblocks = grow(&dir, &mid, &earlier, 20, &mut |i| {
                let index = 4 + i;
                let term = 2 + i / 4;
                let entry = Entry {
                    index,
                    term,
                    data: vec![b'a' + (i % 26) as u8; 1000].into(),
                    ..Default::default()
                };
                s.append(&[entry]).unwrap();
                hard_state = HardState {
                    term,
                    vote: 1 + (i / 4) % 3,
                    commit: index - 1,
                    ..Default::default()
                };
                s.set_hard_state(&hard_state).unwrap();
                s.sync().unwrap();
                last = index;
            });
            (Acked::Raft { hard_state, last }, superblocks)
        }
    };
    Template {
        dir,
        acked,
        superblocks,
        mid,
        earlier,
    }
}

/// The records of a segment file: where each one starts and how many bytes it takes.
fn records(path: &Path) -> Vec<(u64, u64)> {
    let data = fs::read(path).unwrap();
    let mut at = 128;
    let mut found = Vec::new();
    while at + 32 <= data.len() && data[at..at + 32].iter().any(|&b| b != 0) {
        let len = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap()) as usize;
        let taken = (32 + len).next_multiple_of(8);
        found.push((at as u64, taken as u64));
        at += taken;
    }
    assert!(found.len() > 4, "{} holds too few records", path.display());
    found
}

fn segment_in(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}.wal"))
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

fn read_at(path: &Path, offset: u64, len: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; len as usize];
    fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut bytes, offset)
        .unwrap();
    bytes
}

fn truncate(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// A copy of our log of one kind, to damage and then judge.
struct Damaged {
    kind: Kind,
    what: String,
    tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Damaged {
    fn new(kind: Kind, what: impl Into<String>) -> Damaged {
        let template = template(kind, Which::Ours);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        copy_files(&template.dir, &dir);
        Damaged {
            kind,
            what: what.into(),
            tmp,
            dir,
        }
    }

    fn template(&self) -> &'static Template {
        template(self.kind, Which::Ours)
    }

    fn segment(&self, number: u64) -> PathBuf {
        segment_in(&self.dir, number)
    }

    fn last(&self) -> PathBuf {
        self.segment(SEGMENTS as u64)
    }

    fn superblock(&self) -> PathBuf {
        self.dir.join("superblock")
    }

    fn label(&self) -> String {
        format!("{} log, {}", self.kind.name(), self.what)
    }

    /// Inspects (checking that inspection changes nothing), then opens: inspection's result,
    /// and opening's (what acknowledged went back, or why it refused).
    fn judge(&self) -> (Result<RecoveryReport, String>, Result<Vec<String>, String>) {
        let inspected = inspect_read_only(&self.dir, &self.label());
        let opened =
            open_and_check(self.kind, &self.dir, &self.template().acked).map_err(|e| e.to_string());
        (inspected, opened)
    }

    /// Opening and inspection both refuse, naming one of `named`.
    fn expect_refused(&self, named: &[&Path]) {
        let (inspected, opened) = self.judge();
        match opened {
            Err(message) => self.refused(named, &message, inspected),
            Ok(went_back) => panic!(
                "{}: opened (acknowledged state that went back: {went_back:?}); expected a \
                 refusal naming {named:?}",
                self.label()
            ),
        }
    }

    /// Either refused naming one of `named`, or opened with nothing acknowledged gone back.
    fn expect_safe(&self, named: &[&Path]) {
        let (inspected, opened) = self.judge();
        match opened {
            Err(message) => self.refused(named, &message, inspected),
            Ok(went_back) => {
                self.kept(&went_back, inspected);
            }
        }
    }

    /// Opened, and nothing acknowledged went back. Returns inspection's report.
    fn expect_kept(&self) -> RecoveryReport {
        let (inspected, opened) = self.judge();
        match opened {
            Ok(went_back) => self.kept(&went_back, inspected),
            Err(message) => panic!("{}: refused: {message}", self.label()),
        }
    }

    fn refused(&self, named: &[&Path], message: &str, inspected: Result<RecoveryReport, String>) {
        let label = self.label();
        let names = |m: &str| named.iter().any(|p| m.contains(&p.display().to_string()));
        assert!(
            names(message),
            "{label}: refused, but not naming {named:?}: {message}"
        );
        match inspected {
            Err(inspection) => assert!(
                names(&inspection),
                "{label}: inspection refused, but not naming {named:?}: {inspection}"
            ),
            Ok(report) => {
                panic!("{label}: opening refuses ({message}), yet inspection accepts: {report:?}")
            }
        }
        eprintln!("{label}: refused: {message}");
    }

    fn kept(
        &self,
        went_back: &[String],
        inspected: Result<RecoveryReport, String>,
    ) -> RecoveryReport {
        let label = self.label();
        assert!(
            went_back.is_empty(),
            "{label}: opened, and acknowledged state went back: {went_back:?}"
        );
        let report = inspected
            .unwrap_or_else(|m| panic!("{label}: opening accepts, yet inspection refuses: {m}"));
        eprintln!("{label}: accepted, nothing acknowledged went back");
        report
    }

    /// Copies the file of `source`'s log named like `name` over ours.
    fn copy_from(&self, source: &Template, name: &Path) {
        let file = name.file_name().unwrap();
        fs::copy(source.dir.join(file), self.dir.join(file)).unwrap();
    }

    /// Opens the log, to hold it.
    fn hold(&self) -> Held {
        match self.kind {
            Kind::Fence | Kind::Store => {
                Held::Fence(Fence::open(&self.dir, fence_options(self.kind)).unwrap())
            }
            Kind::Node => Held::Node(
                RaftStorage::open(&self.dir, node_identity(Which::Ours), small_wal()).unwrap(),
            ),
        }
    }
}

/// Opens the log of `kind` in `dir` and lists what acknowledged went back.
fn open_and_check(kind: Kind, dir: &Path, acked: &Acked) -> Result<Vec<String>, NodeError> {
    let mut went_back = Vec::new();
    match (kind, acked) {
        (Kind::Fence | Kind::Store, Acked::Marks(marks)) => {
            let fence = Fence::open(dir, fence_options(kind))?;
            for (key, &acked) in marks {
                let name = short(key);
                match fence.lookup(key).map(|id| fence.mark(id)) {
                    None => went_back.push(format!("{name}: its mark {acked} is gone")),
                    Some(Ok(Some(mark))) if mark.generation >= acked.generation => {}
                    Some(other) => {
                        went_back.push(format!("{name}: mark {other:?}, acknowledged {acked}"))
                    }
                }
                // The token just below the acknowledged mark, stale since, must stay so.
                let older = Token::from_parts(acked.generation.get() - 1, acked.holder.get())?;
                match fence.check_key(key, older)? {
                    Verdict::Stale { .. } => {}
                    verdict => went_back.push(format!("{name}: {older} answered {verdict:?}")),
                }
            }
        }
        (Kind::Node, Acked::Raft { hard_state, last }) => {
            let s = RaftStorage::open(dir, node_identity(Which::Ours), small_wal())?;
            if s.identity() != Some(node_identity(Which::Ours)) {
                went_back.push(format!("identity {:?}", s.identity()));
            }
            let found = s.initial_state().unwrap().hard_state;
            if found.term < hard_state.term {
                went_back.push(format!("term {} < {}", found.term, hard_state.term));
            } else if found.term == hard_state.term && found.vote != hard_state.vote {
                went_back.push(format!("vote {} in term {}", found.vote, found.term));
            }
            if found.commit < hard_state.commit {
                went_back.push(format!("commit {} < {}", found.commit, hard_state.commit));
            }
            let found_last = s.last_index().unwrap();
            if found_last < *last {
                went_back.push(format!("last entry {found_last} < {last}"));
            }
        }
        _ => unreachable!("a template's acknowledgements match its kind"),
    }
    went_back.truncate(5);
    Ok(went_back)
}

/// Every file of `dir`: name, bytes, modification time and mode.
type Files = Vec<(String, Vec<u8>, i64, i64, u32)>;

fn files(dir: &Path) -> Files {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Files = entries
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.mode(),
            )
        })
        .collect();
    files.sort();
    files
}

/// A disk that reads from the operating system and records (and refuses) every call that
/// could change anything: inspection must make none.
#[derive(Debug, Default)]
struct ReadOnlyWatch {
    attempts: Mutex<Vec<String>>,
}

impl ReadOnlyWatch {
    fn refuse<T>(&self, op: &str, path: &Path) -> io::Result<T> {
        self.attempts
            .lock()
            .unwrap()
            .push(format!("{op} {}", path.display()));
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "inspection must not change anything",
        ))
    }
}

impl Disk for ReadOnlyWatch {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.refuse("create_dir_all", dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsDisk.list(dir)
    }
    fn is_regular_file(&self, path: &Path) -> io::Result<bool> {
        OsDisk.is_regular_file(path)
    }
    fn link_count(&self, path: &Path) -> io::Result<u64> {
        OsDisk.link_count(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.refuse("create", path)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        self.refuse("open for writing", path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        OsDisk.open_read(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        OsDisk.read(path)
    }
    fn rename(&self, from: &Path, _to: &Path) -> io::Result<()> {
        self.refuse("rename", from)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.refuse("remove", path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.refuse("sync_dir", dir)
    }
    fn try_lock(&self, dir: &Path) -> io::Result<Option<DiskLock>> {
        self.refuse("lock", dir)
    }
}

/// Inspection's verdict in words, with `dir` written as `<log>` so that copies compare.
fn verdict(result: &Result<RecoveryReport, String>, dir: &Path) -> String {
    match result {
        Ok(report) => format!(
            "ok: {} records in {} segments, torn tail {:?}, {} left-over segments, {} temps",
            report.records,
            report.segments,
            report
                .torn_tail
                .as_ref()
                .map(|t| (t.offset, t.discarded_bytes)),
            report.removed_segments.len(),
            report.removed_temps.len()
        ),
        Err(message) => message
            .replace(&dir.display().to_string(), "<log>")
            .replace('\n', " "),
    }
}

/// Inspects `dir`, checking that nothing changed and that no write was attempted, and that a
/// read-only copy read by an unprivileged process gets the same verdict.
fn inspect_read_only(dir: &Path, label: &str) -> Result<RecoveryReport, String> {
    let before = files(dir);
    let watch = Arc::new(ReadOnlyWatch::default());
    let disk = DiskHandle::from_arc(watch.clone());
    let result = Wal::inspect(dir, &disk, &mut |_| Ok(())).map_err(|e| e.to_string());
    let attempts = watch.attempts.lock().unwrap().clone();
    assert!(
        attempts.is_empty(),
        "{label}: inspection tried to change the log: {attempts:?}"
    );
    assert!(
        files(dir) == before,
        "{label}: inspection changed a file (bytes, mtime or mode)"
    );
    if dir.is_dir() {
        let copy = tempfile::tempdir().unwrap();
        fs::set_permissions(copy.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let ro = copy.path().join("log");
        copy_files(dir, &ro);
        for entry in fs::read_dir(&ro).unwrap() {
            fs::set_permissions(entry.unwrap().path(), fs::Permissions::from_mode(0o444)).unwrap();
        }
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
        let read_only = child_inspect(&ro);
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            read_only,
            verdict(&result, dir),
            "{label}: inspecting a read-only copy as an unprivileged user differs"
        );
    }
    result
}

/// Root ignores file modes, so a read-only copy proves nothing to a root process: the copy is
/// inspected by a child running as `nobody`, for whom 0444 and 0555 hold.
fn child_inspect(dir: &Path) -> String {
    let mut command = child(&[(ROLE, "inspect"), (DIR, &dir.to_string_lossy())]);
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        command.uid(NOBODY).gid(NOBODY);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspection child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.split_once("VERDICT ").map(|(_, v)| v))
        .unwrap_or_else(|| panic!("no verdict from the inspection child: {stdout}"))
        .to_owned()
}

/// This test binary again, running only [`child_entry`], with `env`.
fn child(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([
        "--exact",
        "damage::child_entry",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// The child's side; does nothing unless this process was started as a damage child.
#[test]
fn child_entry() {
    let (Ok(role), Ok(dir)) = (std::env::var(ROLE), std::env::var(DIR)) else {
        return;
    };
    let dir = Path::new(&dir);
    match role.as_str() {
        "inspect" => {
            let result = Wal::inspect(dir, &DiskHandle::default(), &mut |_| Ok(()))
                .map_err(|e| e.to_string());
            println!("VERDICT {}", verdict(&result, dir));
        }
        "open" => {
            let kind = Kind::parse(&std::env::var(KIND).unwrap());
            let opened = match kind {
                Kind::Fence | Kind::Store => Fence::open(dir, fence_options(kind))
                    .map(drop)
                    .map_err(NodeError::from),
                Kind::Node => {
                    RaftStorage::open(dir, node_identity(Which::Ours), small_wal()).map(drop)
                }
            };
            match opened {
                Ok(()) => println!("OPEN opened"),
                Err(e) if e.kind() == ErrorKind::Locked => println!("OPEN locked"),
                Err(e) => println!("OPEN error {e}"),
            }
        }
        other => panic!("unknown damage child role {other}"),
    }
}

/// A log held open.
#[allow(
    clippy::large_enum_variant,
    reason = "one per test, never moved in a loop (RaftStorage shrank when its log became shared)"
)]
enum Held {
    Fence(Fence),
    Node(RaftStorage),
}

impl Held {
    /// One acknowledged write: a new mark, or a new term.
    fn advance(&mut self, generation: u64) -> Result<(), NodeError> {
        match self {
            Held::Fence(fence) => {
                let token = Token::from_parts(generation, 1)?;
                match fence.check_key(b"after", token)? {
                    Verdict::Advanced { .. } => Ok(()),
                    verdict => panic!("a new generation answered {verdict:?}"),
                }
            }
            Held::Node(s) => {
                let mut hard_state = s.hard_state().clone();
                hard_state.term = generation;
                s.set_hard_state(&hard_state)?;
                s.sync()
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pieces of another log.

/// The logs a piece of ours can be taken from: the other log of our kind, and both logs of
/// each other kind (another fence, another cluster's node, a store).
fn strangers(kind: Kind) -> Vec<(String, Kind, &'static Template)> {
    let mut found = vec![(
        format!("another {}", kind.name()),
        kind,
        template(kind, Which::Other),
    )];
    for other in KINDS.into_iter().filter(|&k| k != kind) {
        found.push((
            format!("a {}", other.name()),
            other,
            template(other, Which::Ours),
        ));
    }
    found
}

fn a_segment_of_another_log_is_refused(number: u64, place: &str) {
    each_kind(|kind| {
        for (stranger, _, source) in strangers(kind) {
            let log = Damaged::new(kind, format!("{place} segment from {stranger}"));
            let victim = log.segment(number);
            log.copy_from(source, &victim);
            log.expect_refused(&[&victim]);
        }
    });
}

#[test]
fn a_middle_segment_of_another_log_is_refused() {
    a_segment_of_another_log_is_refused(3, "middle");
}

#[test]
fn the_last_segment_of_another_log_is_refused() {
    a_segment_of_another_log_is_refused(SEGMENTS as u64, "last");
}

#[test]
fn the_base_segment_of_another_log_is_refused() {
    a_segment_of_another_log_is_refused(1, "base");
}

#[test]
fn a_record_of_another_log_at_the_same_offset_is_refused() {
    // The other log of the same kind was built the same way: its records lie at the same
    // offsets, with the same lengths, and are valid records of its own.
    each_kind(|kind| {
        let other = template(kind, Which::Other);
        for (number, pick) in [(3, "a middle"), (5, "a middle"), (5, "the last")] {
            let log = Damaged::new(
                kind,
                format!(
                    "{pick} record of segment {number} from another {}",
                    kind.name()
                ),
            );
            let victim = log.segment(number);
            let ours = records(&victim);
            let (at, len) = if pick == "the last" {
                ours[ours.len() - 1]
            } else {
                ours[ours.len() / 2]
            };
            let theirs = read_at(&segment_in(&other.dir, number), at, len);
            assert_ne!(theirs, read_at(&victim, at, len), "the logs differ");
            write_at(&victim, at, &theirs);
            log.expect_refused(&[&victim]);
        }
    });
}

#[test]
fn a_record_of_this_log_copied_over_a_later_one_is_refused() {
    // A whole, valid record of this very log, replayed at another offset: its checksum covers
    // its position, so it is not valid there.
    each_kind(|kind| {
        for number in [3, 5] {
            let log = Damaged::new(
                kind,
                format!("an earlier record copied over the last one of segment {number}"),
            );
            let victim = log.segment(number);
            let ours = records(&victim);
            let (at, len) = ours[ours.len() - 1];
            let &(from, _) = ours[..ours.len() - 1]
                .iter()
                .rev()
                .find(|&&(_, l)| l == len)
                .expect("an earlier record of the same length");
            write_at(&victim, at, &read_at(&victim, from, len));
            log.expect_refused(&[&victim]);
        }
    });
}

// ---------------------------------------------------------------------------------------
// Shortened segments, zeroed records.

#[test]
fn a_segment_cut_short_is_refused() {
    each_kind(|kind| {
        for (number, cut) in [
            (3, "at a middle record"),
            (5, "at a middle record"),
            (5, "after its last record"),
        ] {
            let log = Damaged::new(kind, format!("segment {number} cut {cut}"));
            let victim = log.segment(number);
            let ours = records(&victim);
            let (at, len) = if cut == "after its last record" {
                ours[ours.len() - 1]
            } else {
                ours[ours.len() / 2]
            };
            let end = if cut == "after its last record" {
                at + len
            } else {
                at
            };
            truncate(&victim, end);
            log.expect_refused(&[&victim]);
        }
    });
}

#[test]
fn a_segment_truncated_to_nothing_is_refused() {
    each_kind(|kind| {
        for number in [1, 3, 5] {
            let log = Damaged::new(kind, format!("segment {number} truncated to 0 bytes"));
            let victim = log.segment(number);
            truncate(&victim, 0);
            log.expect_refused(&[&victim]);
        }
    });
}

#[test]
fn the_last_record_of_a_segment_before_the_last_zeroed_is_refused() {
    each_kind(|kind| {
        for number in [1, 4] {
            let log = Damaged::new(kind, format!("last record of segment {number} zeroed"));
            let victim = log.segment(number);
            let (at, len) = *records(&victim).last().unwrap();
            write_at(&victim, at, &vec![0; len as usize]);
            log.expect_refused(&[&victim]);
        }
    });
}

#[test]
fn a_record_in_the_middle_zeroed_is_refused() {
    each_kind(|kind| {
        for number in [1, 3, 5] {
            let log = Damaged::new(kind, format!("a middle record of segment {number} zeroed"));
            let victim = log.segment(number);
            let ours = records(&victim);
            let (at, len) = ours[ours.len() / 2];
            write_at(&victim, at, &vec![0; len as usize]);
            log.expect_refused(&[&victim]);
        }
    });
}

/// Zeros from `from` to the end of the file: whole records gone, the file's length kept.
fn zero_from(path: &Path, from: u64) {
    let len = fs::metadata(path).unwrap().len();
    write_at(path, from, &vec![0; (len - from) as usize]);
}

#[test]
fn the_last_records_of_the_last_segment_zeroed_are_refused() {
    each_kind(|kind| {
        for (from_end, how) in [
            (1, "its last record zeroed"),
            (5, "its last 5 records zeroed"),
            (usize::MAX, "every record zeroed"),
            (
                usize::MAX - 1,
                "cut at a middle record and extended back to its length",
            ),
        ] {
            let log = Damaged::new(kind, format!("last segment: {how}"));
            let victim = log.last();
            let ours = records(&victim);
            if from_end == usize::MAX - 1 {
                let len = fs::metadata(&victim).unwrap().len();
                truncate(&victim, ours[ours.len() / 2].0);
                truncate(&victim, len);
            } else {
                zero_from(&victim, ours[ours.len().saturating_sub(from_end)].0);
            }
            log.expect_safe(&[&victim, &log.superblock()]);
        }
    });
}

// ---------------------------------------------------------------------------------------
// Older copies of our own files.

#[test]
fn an_older_copy_of_a_middle_segment_is_refused() {
    // Segment 4 as it was a few writes after the roll that made it, when it was the last.
    each_kind(|kind| {
        let log = Damaged::new(kind, "segment 4 restored from when it was the last");
        let victim = log.segment(4);
        fs::copy(segment_in(&log.template().mid, 4), &victim).unwrap();
        log.expect_refused(&[&victim]);
    });
}

#[test]
fn an_older_copy_of_the_last_segment_is_refused() {
    each_kind(|kind| {
        let log = Damaged::new(kind, "last segment restored from an earlier copy");
        let victim = log.last();
        fs::copy(
            segment_in(&log.template().earlier, SEGMENTS as u64),
            &victim,
        )
        .unwrap();
        log.expect_safe(&[&victim, &log.superblock()]);
    });
}

#[test]
fn the_last_segment_of_a_diverged_clone_is_refused() {
    each_kind(|kind| {
        let log = Damaged::new(kind, "last segment from a diverged clone of this log");
        // The clone: the earlier copy, opened elsewhere and written to.
        let clone = tempfile::tempdir().unwrap();
        let clone_dir = clone.path().join("log");
        copy_files(&log.template().earlier, &clone_dir);
        let mut held = match kind {
            Kind::Fence | Kind::Store => {
                Held::Fence(Fence::open(&clone_dir, fence_options(kind)).unwrap())
            }
            Kind::Node => Held::Node(
                RaftStorage::open(&clone_dir, node_identity(Which::Ours), small_wal()).unwrap(),
            ),
        };
        for generation in 0..40 {
            held.advance(1_000_000 + generation).unwrap();
        }
        drop(held);
        let victim = log.last();
        fs::copy(segment_in(&clone_dir, SEGMENTS as u64), &victim).unwrap();
        log.expect_safe(&[&victim, &log.superblock()]);
    });
}

#[test]
fn an_older_superblock_is_refused() {
    each_kind(|kind| {
        for when in [2, SEGMENTS - 1] {
            let log = Damaged::new(
                kind,
                format!("superblock restored from when the log had {when} segments"),
            );
            fs::write(log.superblock(), &log.template().superblocks[&when]).unwrap();
            // The superblock cannot know it is old: the segments it does not list are named.
            let first_unlisted = log.segment(when as u64 + 1);
            let second_unlisted = log.segment(when as u64 + 2);
            log.expect_refused(&[&log.superblock(), &first_unlisted, &second_unlisted]);
        }
    });
}

#[test]
fn an_older_copy_of_the_whole_log_opens_as_what_it_was() {
    // Out of reach of any log: a whole, consistent older copy of the directory is a valid
    // log. Only something outside the directory (a peer, an operator's record) can tell. This
    // pins the behaviour, and shows the checks of this suite do see state going back.
    each_kind(|kind| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        copy_files(&template(kind, Which::Ours).earlier, &dir);
        let went_back = open_and_check(kind, &dir, &template(kind, Which::Ours).acked).unwrap();
        assert!(
            !went_back.is_empty(),
            "{kind:?}: the older copy lost nothing?"
        );
        eprintln!(
            "{} log, whole directory restored from an earlier copy: opens, went back: {went_back:?}",
            kind.name()
        );
    });
}

// ---------------------------------------------------------------------------------------
// The superblock.

#[test]
fn the_superblock_of_another_log_is_refused() {
    each_kind(|kind| {
        for (stranger, source_kind, source) in strangers(kind) {
            let log = Damaged::new(kind, format!("superblock from {stranger}"));
            log.copy_from(source, &log.superblock());
            // Which file is the stranger cannot be told: the superblock names one log, the
            // segments another, and the first segment read is named. A superblock of another
            // owner (or another cluster's node) is refused by the owner check first, which
            // names the directory only.
            let (base, superblock) = (log.segment(1), log.superblock());
            let mut named: Vec<&Path> = vec![&base, &superblock];
            if source_kind != kind || kind == Kind::Node {
                named.push(&log.dir);
            }
            log.expect_refused(&named);
        }
    });
}

const COPY: u64 = 512;

#[test]
fn one_superblock_copy_of_another_log_is_refused() {
    each_kind(|kind| {
        for copy in 0..4 {
            let log = Damaged::new(
                kind,
                format!("superblock copy {copy} from another {}", kind.name()),
            );
            let theirs = read_at(
                &template(kind, Which::Other).dir.join("superblock"),
                copy * COPY,
                COPY,
            );
            write_at(&log.superblock(), copy * COPY, &theirs);
            log.expect_refused(&[&log.superblock()]);
        }
    });
}

#[test]
fn one_or_two_damaged_superblock_copies_still_open() {
    each_kind(|kind| {
        for damaged in [&[0][..], &[1], &[2], &[3], &[0, 1], &[1, 3]] {
            let log = Damaged::new(kind, format!("superblock copies {damaged:?} damaged"));
            for &copy in damaged {
                write_at(&log.superblock(), copy * COPY + 20, b"rot");
            }
            let report = log.expect_kept();
            assert_eq!(
                report.superblock_copies,
                4 - damaged.len(),
                "{}",
                log.label()
            );
        }
    });
}

#[test]
fn every_superblock_copy_damaged_is_refused() {
    each_kind(|kind| {
        for how in [
            "bit rot in each copy",
            "zeroed",
            "truncated inside the first copy",
        ] {
            let log = Damaged::new(kind, format!("every superblock copy damaged: {how}"));
            let superblock = log.superblock();
            match how {
                "zeroed" => write_at(&superblock, 0, &[0; 2048]),
                // Cut inside the first copy: no copy is whole.
                "truncated inside the first copy" => truncate(&superblock, COPY - 1),
                _ => (0..4).for_each(|copy| write_at(&superblock, copy * COPY + 70, b"rot")),
            }
            log.expect_refused(&[&superblock]);
        }
    });
}

// ---------------------------------------------------------------------------------------
// Missing files.

#[test]
fn a_deleted_segment_is_refused() {
    each_kind(|kind| {
        for number in [1, 3, 5] {
            let log = Damaged::new(kind, format!("segment {number} deleted"));
            fs::remove_file(log.segment(number)).unwrap();
            log.expect_refused(&[&log.segment(number)]);
        }
    });
}

#[test]
fn every_segment_deleted_is_refused() {
    each_kind(|kind| {
        let log = Damaged::new(kind, "every segment deleted, the superblock kept");
        for number in 1..=SEGMENTS as u64 {
            fs::remove_file(log.segment(number)).unwrap();
        }
        log.expect_refused(&[&log.segment(1), &log.segment(SEGMENTS as u64)]);
    });
}

#[test]
fn a_deleted_superblock_is_refused() {
    each_kind(|kind| {
        let log = Damaged::new(kind, "superblock deleted, segments kept");
        fs::remove_file(log.superblock()).unwrap();
        log.expect_refused(&[&log.superblock()]);
    });
}

#[test]
fn an_emptied_directory_makes_a_new_log_as_documented() {
    // recovery.rs rule 1: a new log is created only in an empty directory. A directory whose
    // every file was deleted is one: nothing is left to tell that a log was there, so the new
    // fence has no marks and takes the stale token. Only something outside the directory can
    // catch this; what the kernel does guarantee is that inspection does not create a log.
    each_kind(|kind| {
        for how in ["every file deleted", "the directory itself deleted"] {
            let log = Damaged::new(kind, how);
            if how == "every file deleted" {
                for entry in fs::read_dir(&log.dir).unwrap() {
                    fs::remove_file(entry.unwrap().path()).unwrap();
                }
            } else {
                fs::remove_dir_all(&log.dir).unwrap();
            }
            let inspected = inspect_read_only(&log.dir, &log.label());
            assert!(
                inspected.is_err(),
                "{}: inspection found a log",
                log.label()
            );
            assert!(files(&log.dir).is_empty(), "inspection created something");
            let went_back = open_and_check(kind, &log.dir, &log.template().acked).unwrap();
            assert!(!went_back.is_empty(), "{}", log.label());
            let identity = |dir: &Path| {
                Wal::inspect(dir, &DiskHandle::default(), &mut |_| Ok(()))
                    .unwrap()
                    .identity
                    .unwrap()
            };
            let (new, old) = (identity(&log.dir), identity(&log.template().dir));
            assert_eq!(new.owner, old.owner, "{}", log.label());
            assert_ne!(new.id, old.id, "{}: a new log has a new id", log.label());
            eprintln!(
                "{}: a new, empty log was created; went back: {went_back:?}",
                log.label()
            );
        }
    });
}

// ---------------------------------------------------------------------------------------
// Renamed, swapped and extra segments; temporary files.

#[test]
fn swapped_segments_are_refused() {
    each_kind(|kind| {
        for (a, b) in [(1, 2), (2, 3), (4, 5)] {
            let log = Damaged::new(kind, format!("segments {a} and {b} swapped"));
            let (pa, pb) = (log.segment(a), log.segment(b));
            let aside = log.dir.join("aside");
            fs::rename(&pa, &aside).unwrap();
            fs::rename(&pb, &pa).unwrap();
            fs::rename(&aside, &pb).unwrap();
            log.expect_refused(&[&pa, &pb]);
        }
    });
}

#[test]
fn a_segment_renamed_to_the_next_number_is_refused() {
    each_kind(|kind| {
        for number in [3, 5] {
            let log = Damaged::new(kind, format!("segment {number} renamed to {}", number + 1));
            let (from, to) = (log.segment(number), log.segment(number + 1));
            fs::rename(&from, &to).unwrap();
            log.expect_refused(&[&from, &to]);
        }
    });
}

#[test]
fn an_extra_segment_past_the_last_is_refused() {
    each_kind(|kind| {
        for (copied, number) in [(1, 6), (3, 6), (5, 6), (5, 7)] {
            let log = Damaged::new(
                kind,
                format!("a copy of segment {copied} added as segment {number}"),
            );
            let extra = log.segment(number);
            fs::copy(log.segment(copied), &extra).unwrap();
            log.expect_refused(&[&extra]);
        }
    });
}

#[test]
fn an_extra_segment_of_another_log_past_the_last_is_refused() {
    each_kind(|kind| {
        let log = Damaged::new(kind, "segment 5 of another log added as segment 6");
        let extra = log.segment(6);
        // Its header says 5: renamed, it is refused for its name; a real next segment of
        // another log is refused for its identity (the base case of segment copies above).
        fs::copy(segment_in(&template(kind, Which::Other).dir, 5), &extra).unwrap();
        log.expect_refused(&[&extra]);
    });
}

#[test]
fn temporary_files_that_are_not_ours_are_left_alone() {
    each_kind(|kind| {
        let other = template(kind, Which::Other);
        let strangers: Vec<(&str, Vec<u8>)> = vec![
            ("0000000000000009.wal.tmp", b"someone's notes".to_vec()),
            (
                "0000000000000006.wal.tmp",
                fs::read(segment_in(&other.dir, 5)).unwrap(),
            ),
            ("0000000000000002.wal.tmp", vec![0; 100_000]),
            (
                "superblock.tmp",
                fs::read(other.dir.join("superblock")).unwrap(),
            ),
        ];
        let log = Damaged::new(kind, "temporary files of another log or no log");
        for (name, bytes) in &strangers {
            fs::write(log.dir.join(name), bytes).unwrap();
        }
        let report = log.expect_kept();
        assert!(
            report.removed_temps.is_empty(),
            "{}: {report:?}",
            log.label()
        );
        for (name, bytes) in &strangers {
            assert_eq!(
                &fs::read(log.dir.join(name)).unwrap(),
                bytes,
                "{name} changed"
            );
        }
    });
}

#[test]
fn a_temporary_file_of_another_log_in_an_empty_directory_is_left_alone() {
    each_kind(|kind| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        fs::create_dir(&dir).unwrap();
        let stranger = dir.join("0000000000000009.wal.tmp");
        let bytes = fs::read(segment_in(&template(kind, Which::Other).dir, 5)).unwrap();
        fs::write(&stranger, &bytes).unwrap();
        let opened = open_and_check(kind, &dir, &template(kind, Which::Ours).acked);
        assert!(
            stranger.exists() && fs::read(&stranger).unwrap() == bytes,
            "{kind:?}: opening ({:?}) deleted another log's segment {}",
            opened.map_err(|e| e.to_string()),
            stranger.display()
        );
    });
}

/// Runs `f` on a thread; if it has not finished after a few seconds (blocked opening the FIFO
/// `fifo` for reading), opens the FIFO for writing to let it go on, and says it hung.
fn unless_hung<T: Send + 'static>(
    fifo: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(f()));
    match receiver.recv_timeout(std::time::Duration::from_secs(2)) {
        Ok(done) => Ok(done),
        Err(_) => {
            for _ in 0..10 {
                // A reader is blocked in open(2): a writer's open lets both through, and the
                // reader then reads end-of-file.
                let writer = OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(fifo);
                drop(writer);
                if receiver
                    .recv_timeout(std::time::Duration::from_secs(1))
                    .is_ok()
                {
                    break;
                }
            }
            Err(format!("hung on the FIFO {}", fifo.display()))
        }
    }
}

#[test]
fn a_fifo_in_the_directory_does_not_hang_opening_or_inspection() {
    each_kind(|kind| {
        let mut problems = Vec::new();
        for name in ["0000000000000009.wal.tmp", "0000000000000006.wal"] {
            let log = Damaged::new(kind, format!("a FIFO named {name}"));
            let fifo = log.dir.join(name);
            let path = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
            // SAFETY: a NUL-terminated path that outlives the call.
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
            let dir = log.dir.clone();
            let inspected = unless_hung(&fifo, move || {
                Wal::inspect(&dir, &DiskHandle::default(), &mut |_| Ok(())).map(drop)
            });
            let dir = log.dir.clone();
            let opened = unless_hung(&fifo, move || {
                open_and_check(kind, &dir, &template(kind, Which::Ours).acked)
                    .map_err(|e| e.to_string())
            });
            if let Err(hung) = inspected {
                problems.push(format!("{name}: inspection {hung}"));
            }
            match opened {
                Ok(Ok(went_back)) if went_back.is_empty() => {}
                Ok(Ok(went_back)) => problems.push(format!("{name}: went back: {went_back:?}")),
                Ok(Err(message)) if message.contains(&fifo.display().to_string()) => {}
                Ok(Err(message)) => {
                    problems.push(format!("{name}: refused, not naming it: {message}"))
                }
                Err(hung) => problems.push(format!("{name}: opening {hung}")),
            }
        }
        assert!(problems.is_empty(), "{} log: {problems:?}", kind.name());
    });
}

// ---------------------------------------------------------------------------------------
// Two users of one directory.

#[test]
fn a_second_process_is_refused_while_a_log_is_open_even_after_deleting_lock_files() {
    each_kind(|kind| {
        let log = Damaged::new(kind, "opened by a second process");
        let link = log.tmp.path().join("link");
        std::os::unix::fs::symlink(&log.dir, &link).unwrap();
        let second = |path: &Path| {
            let out = child(&[
                (ROLE, "open"),
                (DIR, &path.to_string_lossy()),
                (KIND, kind.name()),
            ])
            .output()
            .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout
                .lines()
                .find_map(|l| l.split_once("OPEN ").map(|(_, v)| v))
                .unwrap_or("nothing")
                .to_owned()
        };
        let holder = log.hold();
        // The lock is the directory's own: no file in it holds the lock, so deleting one (an
        // operator clearing a "stale lock") must not let a second process in.
        // (Not "*lock*": that would take the superblock.)
        for entry in fs::read_dir(&log.dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_lowercase();
            if name == "lock" || name.starts_with("lock.") || name.ends_with(".lock") {
                fs::remove_file(path).unwrap();
            }
        }
        assert_eq!(second(&log.dir), "locked", "{}", log.label());
        assert_eq!(
            second(&link),
            "locked",
            "{}: through a symlink",
            log.label()
        );
        drop(holder);
        // The control: with the holder gone, the same child opens.
        assert_eq!(second(&log.dir), "opened", "{}", log.label());
    });
}

#[test]
fn a_directory_moved_aside_while_open_makes_the_holder_refuse_its_next_advance() {
    each_kind(|kind| {
        for then in [
            "nothing at its path",
            "an empty directory",
            "a copy opened by another user",
        ] {
            let log = Damaged::new(
                kind,
                format!("directory moved aside while open, then {then}"),
            );
            let mut holder = log.hold();
            holder.advance(100_000).unwrap();
            let aside = log.tmp.path().join("aside");
            fs::rename(&log.dir, &aside).unwrap();
            let mut intruder = None;
            match then {
                "an empty directory" => fs::create_dir(&log.dir).unwrap(),
                "a copy opened by another user" => {
                    copy_files(&aside, &log.dir);
                    let mut second = log.hold();
                    second.advance(200_000).unwrap();
                    intruder = Some(second);
                }
                _ => {}
            }
            let err = holder.advance(300_000).unwrap_err().to_string();
            assert!(
                err.contains(&log.dir.display().to_string()),
                "{}: {err}",
                log.label()
            );
            eprintln!("{}: the holder refuses: {err}", log.label());
            drop(intruder);
        }
    });
}

#[test]
fn a_fence_whose_directory_was_replaced_stops_accepting_its_current_token() {
    each_kind(|kind| {
        if kind == Kind::Node {
            return;
        }
        let log = Damaged::new(kind, "directory replaced by a copy opened by another user");
        let Held::Fence(holder) = log.hold() else {
            unreachable!("a fence")
        };
        let current = Token::from_parts(100_000, 1).unwrap();
        assert!(matches!(
            holder.check_key(b"after", current).unwrap(),
            Verdict::Advanced { .. }
        ));
        let aside = log.tmp.path().join("aside");
        fs::rename(&log.dir, &aside).unwrap();
        copy_files(&aside, &log.dir);
        let intruder = Fence::open(&log.dir, fence_options(kind)).unwrap();
        let newer = Token::from_parts(200_000, 2).unwrap();
        assert!(matches!(
            intruder.check_key(b"after", newer).unwrap(),
            Verdict::Advanced { .. }
        ));
        // The holder finds out at its next advance...
        assert!(holder.check_key(b"other", current).is_err());
        // ...and from then on must not accept the deposed generation either.
        let verdict = holder.check_key(b"after", current);
        assert!(
            !matches!(verdict, Ok(Verdict::Accepted)),
            "{}: the holder, which knows its directory was replaced, answered {verdict:?} to \
             {current} while the copy's mark is {newer}",
            log.label()
        );
    });
}

#[test]
fn a_log_used_in_a_child_after_fork_refuses() {
    each_kind(|kind| {
        let log = Damaged::new(kind, "used in a child after fork");
        let mut holder = log.hold();
        holder.advance(100_000).unwrap();
        // SAFETY: the child only calls the log (which takes no lock another thread of this
        // process could hold: the log is this test's alone) and `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut code = 0;
            match &mut holder {
                Held::Fence(fence) => {
                    let id = fence.lookup(b"after").unwrap();
                    let current = Token::from_parts(100_000, 1).unwrap();
                    let newer = Token::from_parts(100_001, 1).unwrap();
                    let older = Token::from_parts(99_999, 1).unwrap();
                    // The hot path, an advance and a stale token: each refused, not answered.
                    for (bit, token) in [(1, current), (2, newer), (4, older)] {
                        if !matches!(fence.check(id, token), Err(e) if e.kind() == ErrorKind::Forked)
                        {
                            code |= bit;
                        }
                    }
                    if !matches!(
                        fence.check_key(b"new", newer),
                        Err(e) if e.kind() == ErrorKind::Forked
                    ) {
                        code |= 8;
                    }
                }
                Held::Node(s) => {
                    let mut hard_state = s.hard_state().clone();
                    hard_state.term += 1;
                    let refused = match s.set_hard_state(&hard_state) {
                        Err(e) => e.kind() == ErrorKind::Forked,
                        Ok(()) => matches!(s.sync(), Err(e) if e.kind() == ErrorKind::Forked),
                    };
                    if !refused {
                        code |= 16;
                    }
                }
            }
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "{}: child died", log.label());
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "{}: uses that were not refused (bits)",
            log.label()
        );
        // The parent still owns the log, and the child changed nothing in it.
        holder.advance(100_002).unwrap();
        drop(holder);
        let went_back = open_and_check(kind, &log.dir, &log.template().acked).unwrap();
        assert!(went_back.is_empty(), "{went_back:?}");
    });
}
