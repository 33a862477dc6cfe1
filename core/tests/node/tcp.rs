//! Groups over real TCP on loopback: secure (mutual TLS, development certificates) and
//! insecure; a peer that restarts; bad configurations.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fencekit::node::{Node, NodeConfig};
use fencekit::transport::tcp::tls::TlsFiles;
use fencekit::transport::tcp::wire::{Handshake, read_frame};
use fencekit::transport::tcp::{Security, TcpConfig, TcpMonitor, TcpTransport, dev_certs};
use fencekit::{ClusterId, NodeId};

use crate::id;

pub(crate) const CLUSTER: ClusterId = ClusterId::new(0xFE4CE);

pub(crate) fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Nodes `1..=n` over TCP, each with its own data directory; secure unless made `insecure`.
pub(crate) struct TcpGroup {
    pub addrs: Vec<SocketAddr>,
    pub nodes: Vec<Option<(Node, TcpMonitor)>>,
    /// The development CA's directory (`None`: insecure).
    pub certs: Option<PathBuf>,
    dirs: Vec<tempfile::TempDir>,
    _certs_dir: tempfile::TempDir,
}

impl TcpGroup {
    pub(crate) fn secure(n: u64) -> TcpGroup {
        TcpGroup::new(n, true)
    }

    pub(crate) fn insecure(n: u64) -> TcpGroup {
        TcpGroup::new(n, false)
    }

    fn new(n: u64, secure: bool) -> TcpGroup {
        let certs_dir = tempfile::tempdir().unwrap();
        let certs = secure.then(|| {
            let dir = certs_dir.path().join("ca");
            let ids: Vec<NodeId> = (1..=n).map(id).collect();
            dev_certs::init(&dir, CLUSTER, &ids).unwrap();
            dir
        });
        let mut group = TcpGroup {
            addrs: (0..n).map(|_| free_addr()).collect(),
            nodes: Vec::new(),
            certs,
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            _certs_dir: certs_dir,
        };
        for i in 1..=n {
            let started = group.start_node(i);
            group.nodes.push(Some(started));
        }
        group
    }

    pub(crate) fn security(&self, n: u64) -> Security {
        match &self.certs {
            Some(dir) => Security::Tls(TlsFiles::in_dir(dev_certs::node_dir(dir, id(n)))),
            None => Security::Insecure,
        }
    }

    fn start_node(&self, n: u64) -> (Node, TcpMonitor) {
        let voters: Vec<NodeId> = (1..=self.addrs.len() as u64).map(id).collect();
        let config = NodeConfig::new(id(n), CLUSTER, self.dirs[(n - 1) as usize].path(), voters);
        let tcp = TcpConfig {
            cluster: CLUSTER,
            node: id(n),
            listen: self.addrs[(n - 1) as usize],
            peers: self.peers_of(n),
            security: self.security(n),
        };
        start(config, tcp)
    }

    fn peers_of(&self, n: u64) -> Vec<(NodeId, String)> {
        (1..=self.addrs.len() as u64)
            .filter(|&p| p != n)
            .map(|p| (id(p), self.addrs[(p - 1) as usize].to_string()))
            .collect()
    }

    pub(crate) fn node(&self, n: u64) -> &Node {
        &self.nodes[(n - 1) as usize].as_ref().unwrap().0
    }

    pub(crate) fn monitor(&self, n: u64) -> &TcpMonitor {
        &self.nodes[(n - 1) as usize].as_ref().unwrap().1
    }

    pub(crate) fn stop(&mut self, n: u64) {
        if let Some((node, _)) = self.nodes[(n - 1) as usize].take() {
            node.stop();
        }
    }

    pub(crate) fn restart(&mut self, n: u64) {
        self.stop(n);
        let started = self.start_node(n);
        self.nodes[(n - 1) as usize] = Some(started);
    }

    /// The one node with usable leadership, waiting up to 10 s for one; panics on two.
    pub(crate) fn leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let leaders: Vec<u64> = (1..=self.addrs.len() as u64)
                .filter(|&n| {
                    self.nodes[(n - 1) as usize]
                        .as_ref()
                        .is_some_and(|(node, _)| node.leadership().is_some())
                })
                .collect();
            assert!(leaders.len() <= 1, "two usable leaders: {leaders:?}");
            if let [one] = leaders[..] {
                return one;
            }
            assert!(Instant::now() < deadline, "no leader within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Proposes through the leader and waits until every running node committed it.
    pub(crate) fn commit_everywhere(&self, data: &[u8]) {
        let leader = self.node(self.leader());
        let index = leader
            .propose(data.to_vec())
            .unwrap()
            .wait(Duration::from_secs(5))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        for (node, _) in self.nodes.iter().flatten() {
            while node.status().unwrap().commit < index {
                assert!(Instant::now() < deadline, "a follower did not catch up");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

pub(crate) fn start(config: NodeConfig, tcp: TcpConfig) -> (Node, TcpMonitor) {
    let mut monitor = None;
    let node = Node::start(config, |inbox| {
        let t = TcpTransport::bind(tcp, inbox)?;
        monitor = Some(t.monitor());
        Ok(t)
    })
    .unwrap();
    (node, monitor.unwrap())
}

pub(crate) fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub(crate) fn count(
    monitor: &TcpMonitor,
    f: impl Fn(&fencekit::transport::tcp::TcpStats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    f(monitor.stats()).load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn a_secure_group_elects_replicates_and_survives_a_restart() {
    let mut group = TcpGroup::secure(3);
    for i in 0..20 {
        group.commit_everywhere(format!("p{i}").as_bytes());
    }
    let leader = group.leader();
    let follower = if leader == 1 { 2 } else { 1 };
    group.restart(follower);
    group.commit_everywhere(b"after a follower restart");
    group.restart(leader);
    group.commit_everywhere(b"after the leader restarted");
    for n in 1..=3 {
        assert_eq!(count(group.monitor(n), |s| &s.refused), 0, "node {n}");
        assert_eq!(group.node(n).status().unwrap().refused_messages, 0);
        assert!(!group.monitor(n).is_insecure());
    }
}

/// In an insecure group a stranger's handshake is refused with a bare "NO": nothing about
/// the node (its cluster, id or membership) is told to a peer that has not proved who it is.
/// The node logs and counts the reason.
#[test]
fn an_insecure_node_tells_a_stranger_nothing() {
    let group = TcpGroup::insecure(3);
    group.leader();
    let refusals = [
        (
            Handshake {
                cluster: ClusterId::new(0xBAD),
                from: 2,
                to: 1,
            },
            "cluster",
        ),
        (
            Handshake {
                cluster: CLUSTER,
                from: 9,
                to: 1,
            },
            "not a member",
        ),
        (
            Handshake {
                cluster: CLUSTER,
                from: 2,
                to: 3,
            },
            "addressed to node 3",
        ),
    ];
    for (handshake, reason) in refusals {
        let mut s = TcpStream::connect(group.addrs[0]).unwrap();
        s.write_all(&handshake.encode()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        assert!(read_frame(&mut s, &mut answer, 1024).unwrap());
        assert_eq!(answer, b"NO", "{reason}: told the stranger more");
        wait_until("the refusal is logged", || {
            group
                .monitor(1)
                .last_refusal()
                .is_some_and(|r| r.contains(reason))
        });
    }
    assert!(count(group.monitor(1), |s| &s.refused) >= 3);
    assert!(group.monitor(1).is_insecure());
}

#[test]
fn bad_certificate_files_are_refused_with_the_file_named() {
    let certs = tempfile::tempdir().unwrap();
    let ca = certs.path().join("ca");
    dev_certs::init(&ca, CLUSTER, &[id(1), id(2)]).unwrap();
    let other = certs.path().join("other");
    dev_certs::init(&other, CLUSTER, &[id(1)]).unwrap();
    let files = TlsFiles::in_dir(dev_certs::node_dir(&ca, id(1)));
    let bind = |security: Security, node: u64| {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig::new(id(node), CLUSTER, dir.path(), vec![id(node)]);
        Node::start(config, |inbox| {
            TcpTransport::bind(
                TcpConfig {
                    cluster: CLUSTER,
                    node: id(node),
                    listen: free_addr(),
                    peers: vec![],
                    security,
                },
                inbox,
            )
            .map_err(fencekit::NodeError::from)
        })
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let chmod = |path: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // A key others can read.
    chmod(&files.key, 0o644);
    let err = bind(Security::Tls(files.clone()), 1);
    assert!(
        err.contains("node.key") && err.contains("chmod 600"),
        "{err}"
    );
    chmod(&files.key, 0o600);
    // A CA file others can write.
    chmod(&files.ca, 0o666);
    let err = bind(Security::Tls(files.clone()), 1);
    assert!(err.contains("ca.crt") && err.contains("writable"), "{err}");
    chmod(&files.ca, 0o644);
    // A directory on the way that others may write: the files could be swapped. The node's
    // own directory, a parent, or a directory holding a symbolic link to them.
    let node_dir = files.key.parent().unwrap().to_path_buf();
    for dir in [node_dir.clone(), ca.clone()] {
        chmod(&dir, 0o777);
        let err = bind(Security::Tls(files.clone()), 1);
        assert!(err.contains("swapped"), "{err}");
        chmod(&dir, 0o700);
    }
    let open_dir = certs.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    chmod(&open_dir, 0o777);
    std::os::unix::fs::symlink(&node_dir, open_dir.join("link")).unwrap();
    let err = bind(Security::Tls(TlsFiles::in_dir(open_dir.join("link"))), 1);
    assert!(err.contains("swapped") && err.contains("open"), "{err}");
    // A file owned by someone else (checked where the tests run as root).
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&files.ca, Some(65534), None).unwrap();
        let err = bind(Security::Tls(files.clone()), 1);
        assert!(err.contains("owned by uid 65534"), "{err}");
        std::os::unix::fs::chown(&files.ca, Some(0), None).unwrap();
    }
    // A certificate for another node.
    let err = bind(Security::Tls(files.clone()), 2);
    assert!(
        err.contains("names node 1") && err.contains("this is node 2"),
        "{err}"
    );
    // A certificate the CA did not sign.
    let foreign = TlsFiles {
        ca: other.join("ca.crt"),
        ..files.clone()
    };
    let err = bind(Security::Tls(foreign), 1);
    assert!(err.contains("peers would refuse it"), "{err}");
    // Missing files, and files that are not PEM.
    let err = bind(Security::Tls(TlsFiles::in_dir(certs.path())), 1);
    assert!(err.contains("node.crt"), "{err}");
    std::fs::write(certs.path().join("junk.crt"), "not a certificate").unwrap();
    let junk = TlsFiles {
        cert: certs.path().join("junk.crt"),
        ..files
    };
    let err = bind(Security::Tls(junk), 1);
    assert!(err.contains("junk.crt"), "{err}");
}

#[test]
fn a_port_in_use_and_a_data_directory_of_another_cluster_are_clear_errors() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig::new(id(1), CLUSTER, dir.path(), vec![id(1)]);
    let tcp = |cluster: ClusterId, listen: SocketAddr| TcpConfig {
        cluster,
        node: id(1),
        listen,
        peers: vec![],
        security: Security::Insecure,
    };
    let err = Node::start(config.clone(), |inbox| {
        TcpTransport::bind(tcp(CLUSTER, addr), inbox).map_err(fencekit::NodeError::from)
    })
    .unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    let mut other = config.clone();
    other.cluster = ClusterId::new(0xBAD);
    let err = Node::start(other, |inbox| {
        TcpTransport::bind(tcp(ClusterId::new(0xBAD), free_addr()), inbox)
            .map_err(fencekit::NodeError::from)
    })
    .unwrap_err();
    assert!(err.to_string().contains("belongs to cluster"), "{err}");

    let mut bad = config;
    bad.voters = vec![id(1), id(1)];
    let err = Node::start(bad, |inbox| {
        TcpTransport::bind(tcp(CLUSTER, free_addr()), inbox).map_err(fencekit::NodeError::from)
    })
    .unwrap_err();
    assert!(err.to_string().contains("twice"));
}

/// A peer that accepts connections and never answers holds a dial in its handshake for
/// seconds (and a name lookup can hold one longer, for the resolver's timeout): stopping the
/// node must not wait for it.
#[test]
fn stopping_does_not_wait_for_a_dial_in_progress() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = std::thread::spawn(move || {
        // Holds each connection open, silent, until the listener's test ends.
        let mut sockets = Vec::new();
        for stream in silent.incoming().take(4) {
            sockets.push(stream);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig::new(id(1), CLUSTER, dir.path(), vec![id(1), id(2)]);
    let tcp = TcpConfig {
        cluster: CLUSTER,
        node: id(1),
        listen: free_addr(),
        peers: vec![(id(2), silent_addr.to_string())],
        security: Security::Insecure,
    };
    let (node, _monitor) = start(config, tcp);
    // The sender is now inside its handshake with the silent peer (3 s at most).
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    node.stop();
    let took = stopping.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "stopping waited {took:?} for a dial"
    );
    drop(held);
}

/// Replace `to`'s files with `from`'s, as an operator rotating certificates would: each file
/// written beside and renamed over the old one.
fn replace_files(from: &TlsFiles, to: &TlsFiles) {
    for (src, dst) in [
        (&from.cert, &to.cert),
        (&from.key, &to.key),
        (&from.ca, &to.ca),
    ] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }
}

/// Certificates can be replaced without a restart: every node's files are swapped for those
/// of a new CA, the running nodes pick them up, and a node restarted with the new files
/// rejoins (with the old trust it would be refused). A replacement that does not load is
/// counted and the previous certificates stay in use.
#[test]
fn replaced_certificates_are_picked_up_without_a_restart() {
    let mut group = TcpGroup::secure(3);
    group.commit_everywhere(b"with the first CA");
    let certs = group.certs.clone().unwrap();

    // A broken replacement on node 1: refused, counted, and the node goes on.
    let files = TlsFiles::in_dir(dev_certs::node_dir(&certs, id(1)));
    let saved = std::fs::read(&files.cert).unwrap();
    std::fs::write(
        files.cert.with_extension("new"),
        "-----BEGIN CERTIFICATE-----\ngarbage",
    )
    .unwrap();
    std::fs::rename(files.cert.with_extension("new"), &files.cert).unwrap();
    wait_until("the broken replacement is noticed", || {
        count(group.monitor(1), |s| &s.tls_reload_failures) > 0
    });
    group.commit_everywhere(b"with a broken file on node 1");
    std::fs::write(files.cert.with_extension("new"), saved).unwrap();
    std::fs::rename(files.cert.with_extension("new"), &files.cert).unwrap();
    wait_until("the repaired file is reloaded", || {
        count(group.monitor(1), |s| &s.tls_reloads) > 0
    });
    // A key made readable by others is refused on reload; made private again, it is taken:
    // a change of mode alone is noticed.
    use std::os::unix::fs::PermissionsExt;
    let (failures, reloads) = (
        count(group.monitor(1), |s| &s.tls_reload_failures),
        count(group.monitor(1), |s| &s.tls_reloads),
    );
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    wait_until("the readable key is refused", || {
        count(group.monitor(1), |s| &s.tls_reload_failures) > failures
    });
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    wait_until("the private key is taken again", || {
        count(group.monitor(1), |s| &s.tls_reloads) > reloads
    });

    // A new CA for everyone.
    let second = tempfile::tempdir().unwrap();
    let ids: Vec<NodeId> = (1..=3).map(id).collect();
    dev_certs::init(second.path(), CLUSTER, &ids).unwrap();
    for n in 1..=3 {
        replace_files(
            &TlsFiles::in_dir(dev_certs::node_dir(second.path(), id(n))),
            &TlsFiles::in_dir(dev_certs::node_dir(&certs, id(n))),
        );
    }
    // Within a second each running node reloads; then node 3 restarts on the new files and
    // must be let in by the others.
    std::thread::sleep(Duration::from_millis(2500));
    let leader = group.leader();
    let restarted = if leader == 3 { 2 } else { 3 };
    group.restart(restarted);
    group.commit_everywhere(b"with the second CA");
    assert_eq!(count(group.monitor(restarted), |s| &s.refused), 0);
}
