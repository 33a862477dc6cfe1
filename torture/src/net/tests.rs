//! These make real namespaces, veths and nft rules (as root); elsewhere they print why they
//! cannot and pass.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::*;

const TIMEOUT: Duration = Duration::from_millis(300);

/// Held shared by every test making namespaces, exclusively by the one calling
/// `teardown_all`, which would delete the others' namespaces under them.
static EXCLUSIVE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Skips the test if namespaces cannot be made here; else holds [`EXCLUSIVE`] shared.
macro_rules! need_net {
    () => {
        need_net!(read)
    };
    ($how:ident) => {{
        if let Some(why) = Net::unavailable() {
            eprintln!("skipped: {why}");
            return;
        }
        EXCLUSIVE.$how().unwrap_or_else(PoisonError::into_inner)
    }};
}

/// Runs `f` on a thread entered into `member`'s namespace.
fn inside<T: Send>(net: &Net, member: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            net.enter(member).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// A listener bound in `member`'s namespace (a socket stays in the namespace it was made in).
fn listen(net: &Net, member: &str) -> TcpListener {
    let addr = net.addr(member);
    inside(net, member, || TcpListener::bind((addr, 0)).unwrap())
}

fn connect(net: &Net, from: &str, to: &TcpListener) -> std::io::Result<TcpStream> {
    let target = to.local_addr().unwrap();
    inside(net, from, || TcpStream::connect_timeout(&target, TIMEOUT))
}

fn udp(net: &Net, member: &str) -> UdpSocket {
    let addr = net.addr(member);
    let sock = inside(net, member, || UdpSocket::bind((addr, 0)).unwrap());
    sock.set_read_timeout(Some(TIMEOUT)).unwrap();
    sock
}

fn pairs(p: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    p.iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect()
}

/// Connects and checks that the listener sees the connection come from `from`'s address.
fn assert_connects(net: &Net, from: &str, to: &TcpListener) -> (TcpStream, TcpStream) {
    let client =
        connect(net, from, to).unwrap_or_else(|e| panic!("{from} -> {:?}: {e}", to.local_addr()));
    let (server, peer) = to.accept().unwrap();
    assert_eq!(peer.ip(), net.addr(from));
    (client, server)
}

fn netns_list() -> String {
    let out = Command::new(tool("ip"))
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn partition_drops_tcp_both_ways_and_heals() {
    let _shared = need_net!();
    let net = Net::create(&["a", "b", "c"]).unwrap();
    let b = listen(&net, "b");
    let c = listen(&net, "c");
    let (mut client, mut server) = assert_connects(&net, "a", &b);
    assert_connects(&net, "a", &c);
    assert_connects(&net, "ctl", &b);

    net.set_blocked(&pairs(&[("a", "b"), ("b", "a")])).unwrap();
    let err = connect(&net, "a", &b).unwrap_err();
    eprintln!("a -> b while partitioned: {err} ({:?})", err.kind());
    // The rules match every packet, not only new connections: an open one goes silent too.
    client.write_all(b"x").unwrap();
    server.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 1];
    let read = server.read(&mut buf);
    assert!(read.is_err(), "data crossed the partition: {read:?}");
    assert_connects(&net, "a", &c);
    assert_connects(&net, "c", &b);
    assert_connects(&net, "ctl", &b);

    net.set_blocked(&BTreeSet::new()).unwrap();
    assert_connects(&net, "a", &b);
    // The byte held back by the partition arrives with a retransmission once healed.
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"x");
}

#[test]
fn one_way_block_drops_only_that_direction() {
    let _shared = need_net!();
    let net = Net::create(&["a", "b"]).unwrap();
    let b = listen(&net, "b");
    let a = listen(&net, "a");
    net.set_blocked(&pairs(&[("a", "b")])).unwrap();

    // a's SYN to b is dropped; b's SYN reaches a, but a's SYN-ACK back to b is dropped.
    assert!(connect(&net, "a", &b).is_err());
    assert!(connect(&net, "b", &a).is_err());

    let ua = udp(&net, "a");
    let ub = udp(&net, "b");
    let to_a: SocketAddr = ua.local_addr().unwrap();
    let to_b: SocketAddr = ub.local_addr().unwrap();
    ub.send_to(b"b to a", to_a).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = ua.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"b to a"[..], to_b));
    // a -> b: an output drop makes sendto fail with EPERM in a; either way nothing arrives.
    let sent = ua.send_to(b"a to b", to_b);
    eprintln!("UDP a -> b while blocked: sendto gave {sent:?}");
    assert!(ub.recv_from(&mut buf).is_err());

    net.set_blocked(&BTreeSet::new()).unwrap();
    assert_connects(&net, "a", &b);
}

#[test]
fn set_blocked_refuses_unknown_members() {
    let _shared = need_net!();
    let net = Net::create(&["a"]).unwrap();
    assert!(net.set_blocked(&pairs(&[("a", "zz")])).is_err());
    assert!(net.set_blocked(&pairs(&[("a", "a")])).is_err());
}

#[test]
fn a_command_runs_in_the_members_namespace() {
    let _shared = need_net!();
    let net = Net::create(&["a", "b"]).unwrap();
    for member in ["b", "ctl"] {
        let out = net
            .command(member, Path::new("ip"))
            .unwrap()
            .args(["-4", "-o", "addr", "show", "dev", "eth0"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(&format!("inet {}/24", net.addr(member))),
            "{member}: {text}"
        );
    }
    // The child's pid is the program's: it can report its own namespace, the member's.
    let mut child = net
        .command("b", Path::new("sleep"))
        .unwrap()
        .arg("5")
        .spawn()
        .unwrap();
    let ns = std::fs::metadata(format!("/proc/{}/ns/net", child.id()));
    let member = std::fs::metadata(Path::new(NETNS_DIR).join(&net.seats["b"].ns));
    child.kill().unwrap();
    child.wait().unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(ns.unwrap().ino(), member.unwrap().ino());
}

#[test]
fn teardown_removes_everything_and_leftovers_of_dead_runs_go() {
    let _shared = need_net!();
    let net = Net::create(&["a", "b"]).unwrap();
    let names = net.namespaces();
    let listed = netns_list();
    for ns in &names {
        assert!(listed.contains(ns.as_str()), "{ns} missing from {listed}");
    }
    // A process still running in a member's namespace does not stop teardown.
    let mut child = net
        .command("a", Path::new("sleep"))
        .unwrap()
        .arg("30")
        .spawn()
        .unwrap();
    drop(net);
    let listed = netns_list();
    child.kill().unwrap();
    child.wait().unwrap();
    for ns in &names {
        assert!(!listed.contains(ns.as_str()), "{ns} left in {listed}");
        assert!(!live().contains(ns));
    }

    // A leftover of a run killed with -9: a namespace named with a dead pid.
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    assert!(!alive(pid as libc::pid_t));
    let leftover = format!("{PREFIX}{pid}.7-store");
    ip(None, &["netns", "add", &leftover]).unwrap();
    assert!(netns_list().contains(&leftover));
    let net = Net::create(&["x"]).unwrap();
    assert!(!netns_list().contains(&leftover));
    // Teardown twice is fine.
    net.teardown();
    drop(net);
}

#[test]
fn teardown_all_deletes_this_process_namespaces() {
    let _alone = need_net!(write);
    let net = Net::create(&["a"]).unwrap();
    let names = net.namespaces();
    teardown_all();
    let listed = netns_list();
    for ns in &names {
        assert!(!listed.contains(ns.as_str()), "{ns} left in {listed}");
    }
    drop(net);
}

fn root_state() -> String {
    let mut state = String::new();
    for args in [&["-o", "addr"][..], &["-o", "link"][..]] {
        let out = Command::new(tool("ip")).args(args).output().unwrap();
        assert!(out.status.success());
        state.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    let out = Command::new(tool("nft"))
        .args(["list", "tables"])
        .output()
        .unwrap();
    assert!(out.status.success());
    state.push_str(&String::from_utf8(out.stdout).unwrap());
    state
}

#[test]
fn the_root_namespace_gains_nothing() {
    let _shared = need_net!();
    let before = root_state();
    let net = Net::create(&["store", "n1", "n2", "n3"]).unwrap();
    net.set_blocked(&pairs(&[("n1", "store"), ("store", "n1"), ("n2", "n3")]))
        .unwrap();
    let during = root_state();
    assert!(!during.contains("10.77."), "{during}");
    assert!(!during.contains(firewall::TABLE), "{during}");
    assert_eq!(before, during);
    eprintln!("{}", net.describe());
}

#[test]
fn member_names_are_checked() {
    // Refused before anything is made: no root needed.
    assert!(Net::create(&["a", "a"]).is_err());
    assert!(Net::create(&["ctl"]).is_err());
    assert!(Net::create(&["a b"]).is_err());
    assert!(Net::create(&[""]).is_err());
}

#[test]
fn owner_pids_parse() {
    assert_eq!(owner_pid("fkt123.4-store"), Some(123));
    assert_eq!(owner_pid("fkt123.4.hub"), Some(123));
    assert_eq!(owner_pid("fkt123.4.probe"), Some(123));
    assert_eq!(owner_pid("fkt.4-store"), None);
    assert_eq!(owner_pid("fktx1.4-store"), None);
    assert_eq!(owner_pid("fkt123-store"), None);
    assert_eq!(owner_pid("other"), None);
}

#[test]
fn a_program_dies_with_the_thread_that_started_it() {
    let _shared = need_net!();
    let net = Net::create(&["a"]).unwrap();
    // Started from a thread that then ends, as a harness killed with -9 would.
    let mut child = std::thread::scope(|s| {
        s.spawn(|| {
            net.command("a", Path::new("sleep"))
                .unwrap()
                .arg("30")
                .spawn()
                .unwrap()
        })
        .join()
        .unwrap()
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the program outlived the thread that started it"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
}
