//! A disk that stalls in fdatasync must not stop the node thread (etcd#13527: a WAL fsync
//! stall blocked the thread that ticks, check-quorum never stepped the cut-off leader down,
//! and two nodes led). The log syncs beside the node thread: while a sync hangs, the node
//! ticks, its lease ends on time, and check-quorum steps it down.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fencekit::disk::{Disk, DiskFile, DiskHandle, DiskLock, OsDisk};
use fencekit::lease::Timing;
use fencekit::node::{Event, LostReason, Node, NodeConfig, Role};
use fencekit::transport::Inbox;
use fencekit::transport::local::LocalNetwork;
use fencekit::{ClusterId, NodeId};

use crate::id;

/// The switch of a stalling disk, and how many syncs are hanging on it right now.
#[derive(Debug, Default)]
struct Stall {
    on: AtomicBool,
    hanging: AtomicUsize,
}

/// Turns every stall off when dropped, so that a failing test ends instead of waiting for
/// its nodes' hanging syncs. Declared after the nodes: dropped before them.
struct Unstall(Vec<Arc<Stall>>);

impl Drop for Unstall {
    fn drop(&mut self) {
        for stall in &self.0 {
            stall.on.store(false, Ordering::SeqCst);
        }
    }
}

/// The real file system, except that `sync_data` waits while the stall is on.
#[derive(Debug)]
struct StallDisk(Arc<Stall>);

#[derive(Debug)]
struct StallFile {
    inner: Box<dyn DiskFile>,
    stall: Arc<Stall>,
}

impl DiskFile for StallFile {
    fn write_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_at(bytes, offset)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.stall.on.load(Ordering::SeqCst) {
            self.stall.hanging.fetch_add(1, Ordering::SeqCst);
            while self.stall.on.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.stall.hanging.fetch_sub(1, Ordering::SeqCst);
        }
        self.inner.sync_data()
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl StallDisk {
    fn wrap(&self, file: Box<dyn DiskFile>) -> Box<dyn DiskFile> {
        Box::new(StallFile {
            inner: file,
            stall: self.0.clone(),
        })
    }
}

impl Disk for StallDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        OsDisk.create_dir_all(dir)
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
        Ok(self.wrap(OsDisk.create(path)?))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(self.wrap(OsDisk.open(path)?))
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        OsDisk.open_read(path)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        OsDisk.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        OsDisk.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        OsDisk.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        OsDisk.sync_dir(dir)
    }
    fn try_lock(&self, dir: &Path) -> io::Result<Option<DiskLock>> {
        OsDisk.try_lock(dir)
    }
}

#[test]
fn a_leader_whose_fdatasync_hangs_still_ticks_loses_its_lease_and_steps_down_on_time() {
    let net = LocalNetwork::new();
    let voters: Vec<NodeId> = (1..=3).map(id).collect();
    let stalls: Vec<Arc<Stall>> = (0..3).map(|_| Arc::new(Stall::default())).collect();
    let mut dirs = Vec::new();
    let mut nodes = Vec::new();
    for i in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::new(id(i), ClusterId::new(0xD5), dir.path(), voters.clone());
        config.wal.disk = DiskHandle::new(StallDisk(stalls[(i - 1) as usize].clone()));
        nodes.push(Node::start(config, |inbox: Inbox| Ok(net.attach(inbox))).unwrap());
        dirs.push(dir);
    }
    let _unstall = Unstall(stalls.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some(at) = nodes.iter().position(|n| n.leadership().is_some()) {
            break at;
        }
        assert!(Instant::now() < deadline, "no leader within 10 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    let node = &nodes[leader];
    let stall = &stalls[leader];
    // Something committed first, so the group is settled.
    node.propose(b"before".to_vec())
        .unwrap()
        .wait(Duration::from_secs(5))
        .unwrap();
    while node.events().try_recv().is_ok() {}

    // The leader's disk stalls; a proposal makes it sync, and that sync hangs.
    stall.on.store(true, Ordering::SeqCst);
    let ticket = node.propose(b"during the stall".to_vec()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stall.hanging.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the leader never synced");
        std::thread::sleep(Duration::from_millis(1));
    }

    // Cut off from its followers, it must notice on its own clock: its lease ends at its
    // deadline and check-quorum steps it down within an election timeout or so. A node thread
    // blocked in the sync would do neither until the disk answered.
    let timing = Timing::default();
    let cut = Instant::now();
    net.isolate(id(leader as u64 + 1));
    // Check-quorum steps down within two election timeouts of the cut; the rest is slack for
    // a loaded machine. The old design never steps down while the sync hangs.
    let bound = timing.election_timeout() * 5;
    let mut lost = None;
    while node.status().unwrap().role == Role::Leader {
        for event in node.events().try_iter() {
            if let Event::Lost { reason, .. } = event {
                lost.get_or_insert((reason, cut.elapsed()));
            }
        }
        assert!(
            cut.elapsed() < bound,
            "the leader did not step down within {bound:?} while its sync hung"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let stepped_down = cut.elapsed();
    for event in node.events().try_iter() {
        if let Event::Lost { reason, .. } = event {
            lost.get_or_insert((reason, cut.elapsed()));
        }
    }
    assert!(
        stall.hanging.load(Ordering::SeqCst) > 0,
        "the sync must still be hanging: the node ticked beside it"
    );
    let (reason, at) = lost.expect("a Lost event while the sync hung");
    assert!(
        matches!(reason, LostReason::LeaseExpired | LostReason::SteppedDown),
        "{reason:?}"
    );
    assert!(
        at <= timing.lease_duration() + timing.election_timeout() * 2,
        "{at:?}"
    );
    assert!(node.leadership().is_none());
    eprintln!("stepped down {stepped_down:?} after the cut, lost its lease after {at:?}");

    // The disk answers again; the group goes on (the proposal may or may not have survived).
    stall.on.store(false, Ordering::SeqCst);
    net.heal();
    let _ = ticket.wait(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !nodes.iter().any(|n| n.leadership().is_some()) {
        assert!(Instant::now() < deadline, "no leader after the stall");
        std::thread::sleep(Duration::from_millis(5));
    }
    for n in &nodes {
        assert!(n.failure().is_none(), "{:?}", n.failure());
        n.stop();
    }
}
