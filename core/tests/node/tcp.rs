//! A group over real TCP on loopback, and peers that break the rules.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use fencekit::NodeId;
use fencekit::node::{Node, NodeConfig};
use fencekit::transport::tcp::{TcpConfig, TcpMonitor, TcpTransport};

use crate::harness::id;

const CLUSTER: u64 = 0xFE4CE;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start(n: u64, cluster: u64, addrs: &[SocketAddr], dir: &std::path::Path) -> (Node, TcpMonitor) {
    let voters: Vec<NodeId> = (1..=addrs.len() as u64).map(id).collect();
    let config = NodeConfig::new(id(n), cluster, dir, voters);
    let tcp = TcpConfig {
        cluster,
        node: id(n),
        listen: addrs[(n - 1) as usize],
        peers: (1..=addrs.len() as u64)
            .filter(|&p| p != n)
            .map(|p| (id(p), addrs[(p - 1) as usize].to_string()))
            .collect(),
    };
    let mut monitor = None;
    let node = Node::start(config, |inbox| {
        let t = TcpTransport::bind(tcp, inbox)?;
        monitor = Some(t.monitor());
        Ok(t)
    })
    .unwrap();
    (node, monitor.unwrap())
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn handshake(cluster: u64, from: u64, to: u64) -> Vec<u8> {
    let mut h = b"FKT1".to_vec();
    for v in [cluster, from, to] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    frame(&h)
}

fn answer(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

#[test]
fn three_nodes_over_tcp_elect_replicate_and_refuse_strangers() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let started: Vec<(Node, TcpMonitor)> = (1..=3)
        .map(|n| start(n, CLUSTER, &addrs, dirs[(n - 1) as usize].path()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let leader = loop {
        if let Some((node, _)) = started.iter().find(|(n, _)| n.leadership().is_some()) {
            break node;
        }
        assert!(Instant::now() < deadline, "no leader over TCP within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    };
    for i in 0..20 {
        let ticket = leader.propose(format!("p{i}").into_bytes()).unwrap();
        ticket.wait(Duration::from_secs(5)).unwrap();
    }
    let commit = leader.status().unwrap().commit;
    let deadline = Instant::now() + Duration::from_secs(5);
    while started
        .iter()
        .any(|(n, _)| n.status().unwrap().commit < commit)
    {
        assert!(Instant::now() < deadline, "followers did not catch up");
        std::thread::sleep(Duration::from_millis(10));
    }

    // A node of another cluster is refused at the handshake, with the reason.
    let mut s = TcpStream::connect(addrs[0]).unwrap();
    s.write_all(&handshake(0xBAD, 2, 1)).unwrap();
    let reply = answer(&mut s);
    assert!(
        reply.starts_with("NO") && reply.contains("cluster"),
        "{reply}"
    );
    // So is a node that is not a member, and a handshake meant for another node.
    let mut s = TcpStream::connect(addrs[0]).unwrap();
    s.write_all(&handshake(CLUSTER, 9, 1)).unwrap();
    assert!(answer(&mut s).contains("not a member"));
    let mut s = TcpStream::connect(addrs[0]).unwrap();
    s.write_all(&handshake(CLUSTER, 2, 3)).unwrap();
    assert!(answer(&mut s).contains("addressed to node 3"));
    let monitor = &started[0].1;
    assert!(
        monitor
            .stats()
            .refused
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    );
    assert!(
        monitor
            .last_refusal()
            .unwrap()
            .contains("addressed to node 3")
    );

    // A member that sends an oversized frame, or garbage, is cut off; the node keeps going.
    let mut s = TcpStream::connect(addrs[0]).unwrap();
    s.write_all(&handshake(CLUSTER, 2, 1)).unwrap();
    assert_eq!(answer(&mut s), "OK");
    s.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let mut s = TcpStream::connect(addrs[0]).unwrap();
    s.write_all(&handshake(CLUSTER, 3, 1)).unwrap();
    assert_eq!(answer(&mut s), "OK");
    s.write_all(&frame(&[0xFF; 40])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while monitor
        .stats()
        .broken
        .load(std::sync::atomic::Ordering::Relaxed)
        < 2
    {
        assert!(Instant::now() < deadline, "bad frames were not detected");
        std::thread::sleep(Duration::from_millis(10));
    }
    let ticket = leader.propose(b"still-working".to_vec()).unwrap();
    ticket.wait(Duration::from_secs(5)).unwrap();

    // A node configured with the wrong cluster id cannot join: its peers refuse it.
    let stranger_dir = tempfile::tempdir().unwrap();
    let mut wrong = addrs.clone();
    wrong[0] = free_addr();
    let (stranger, stranger_monitor) = start(1, 0xBAD, &wrong, stranger_dir.path());
    let deadline = Instant::now() + Duration::from_secs(5);
    while stranger_monitor.last_refusal().is_none() {
        assert!(Instant::now() < deadline, "the stranger was not refused");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(stranger_monitor.last_refusal().unwrap().contains("cluster"));
    assert!(stranger.leadership().is_none());
    stranger.stop();
    drop(started);
}

#[test]
fn a_port_in_use_and_a_data_directory_of_another_cluster_are_clear_errors() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig::new(id(1), CLUSTER, dir.path(), vec![id(1)]);
    let err = Node::start(config.clone(), |inbox| {
        TcpTransport::bind(
            TcpConfig {
                cluster: CLUSTER,
                node: id(1),
                listen: addr,
                peers: vec![],
            },
            inbox,
        )
    })
    .unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    let mut other = config.clone();
    other.cluster = 0xBAD;
    let err = Node::start(other, |inbox| {
        TcpTransport::bind(
            TcpConfig {
                cluster: 0xBAD,
                node: id(1),
                listen: free_addr(),
                peers: vec![],
            },
            inbox,
        )
    })
    .unwrap_err();
    assert!(err.to_string().contains("belongs to cluster"), "{err}");

    let mut bad = config;
    bad.voters = vec![id(1), id(1)];
    assert!(
        Node::start(bad, |inbox| TcpTransport::bind(
            TcpConfig {
                cluster: CLUSTER,
                node: id(1),
                listen: free_addr(),
                peers: vec![]
            },
            inbox
        ))
        .unwrap_err()
        .to_string()
        .contains("twice")
    );
}
