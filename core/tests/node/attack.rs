//! The attacker harness: every attack found on the peer port, replayed against a secure
//! three-node group over real TCP. After each, the group has exactly one leader with the same
//! membership, and the refusals are counted.
//!
//! - a plaintext client (an insecure node, or a script speaking the handshake in the clear);
//! - a client whose certificate another CA signed;
//! - node 2's certificate claiming to be node 3;
//! - an authenticated but misbehaving member sending what no honest member sends (a proposal
//!   adding voter 66, a term beyond the generations, a commit past the log, a transfer
//!   request, frames too large or not messages, a frame of two million empty entries);
//!
//! The connection flood runs against real node processes, whose memory it measures:
//! `cli/tests/flood.rs`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use fencekit::Term;
use fencekit::transport::tcp::dev_certs;
use fencekit::transport::tcp::tls::TlsFiles;
use fencekit::transport::tcp::wire::{Handshake, read_frame, write_frame};
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Message, MessageType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::tcp::{CLUSTER, TcpGroup, count, wait_until};
use crate::{id, message};

/// What must hold after every attack.
fn assert_group_intact(group: &TcpGroup, what: &str) {
    let leader = group.leader();
    for n in 1..=3 {
        let status = group.node(n).status().unwrap();
        let voters: Vec<u64> = status.voters.iter().map(|v| v.get()).collect();
        assert_eq!(voters, [1, 2, 3], "{what}: node {n}'s membership changed");
        assert!(status.learners.is_empty(), "{what}: a learner was added");
        assert!(
            status.term < Term::new(1000),
            "{what}: node {n} took term {}",
            status.term
        );
        assert!(status.failure.is_none(), "{what}: node {n} failed");
    }
    group.commit_everywhere(what.as_bytes());
    assert_eq!(group.leader(), leader, "{what}: leadership moved");
}

/// The attacker accepts any server: it is the nodes' checks that are under test.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr` presenting the certificate and key of `files`.
fn tls_connect(addr: SocketAddr, files: &TlsFiles) -> std::io::Result<Tls> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(chain, key)
        .unwrap();
    let conn =
        ClientConnection::new(Arc::new(config), ServerName::IpAddress(addr.ip().into())).unwrap();
    let sock = TcpStream::connect(addr)?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.flush()?;
    Ok(tls)
}

/// Opens a TLS connection as `files`' holder, sends `handshake`, and returns the answer.
fn handshake_as(
    addr: SocketAddr,
    files: &TlsFiles,
    handshake: Handshake,
) -> (Tls, std::io::Result<Vec<u8>>) {
    let mut tls = tls_connect(addr, files).unwrap();
    let answer = tls.write_all(&handshake.encode()).and_then(|()| {
        let mut answer = Vec::new();
        read_frame(&mut tls, &mut answer, 1024).map(|_| answer)
    });
    (tls, answer)
}

/// A connection as member `from` (with its own certificate) to member `to`, accepted.
fn member_connection(group: &TcpGroup, from: u64, to: u64) -> Tls {
    let (tls, answer) = handshake_as(
        group.addrs[(to - 1) as usize],
        &node_files(group, from),
        Handshake {
            cluster: CLUSTER,
            from,
            to,
        },
    );
    assert_eq!(answer.unwrap(), b"OK");
    tls
}

fn frame_of(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, &m.write_to_bytes().unwrap()).unwrap();
    out
}

fn node_files(group: &TcpGroup, n: u64) -> TlsFiles {
    TlsFiles::in_dir(dev_certs::node_dir(group.certs.as_ref().unwrap(), id(n)))
}

#[test]
fn strangers_impostors_and_misbehaving_members_are_refused() {
    let group = TcpGroup::secure(3);
    let leader = group.leader();
    let target = leader % 3 + 1; // a follower
    let addr = group.addrs[(target - 1) as usize];
    let refused = |n: u64| count(group.monitor(n), |s| &s.refused);

    // A plaintext client speaking the handshake in the clear: the TLS listener takes it for
    // a broken TLS hello and says nothing about the node.
    let before = refused(target);
    let mut s = TcpStream::connect(addr).unwrap();
    let hello = Handshake {
        cluster: CLUSTER,
        from: 2,
        to: target,
    };
    s.write_all(&hello.encode()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut said = Vec::new();
    let _ = s.read_to_end(&mut said);
    let text = String::from_utf8_lossy(&said);
    assert!(
        !text.contains("OK") && !text.contains("member") && !text.contains("cluster"),
        "{text}"
    );
    wait_until("the plaintext client is counted", || {
        refused(target) > before
    });
    assert_group_intact(&group, "a plaintext client");

    // A certificate from another CA (naming a member of this cluster): refused in TLS.
    let certs = tempfile::tempdir().unwrap();
    dev_certs::init(certs.path(), CLUSTER, &[id(2)]).unwrap();
    let foreign = TlsFiles::in_dir(dev_certs::node_dir(certs.path(), id(2)));
    let before = refused(target);
    let (_, answer) = handshake_as(
        addr,
        &foreign,
        Handshake {
            cluster: CLUSTER,
            from: 2,
            to: target,
        },
    );
    assert!(
        answer.is_err() || answer.as_ref().is_ok_and(|a| a != b"OK"),
        "{answer:?}"
    );
    wait_until("the foreign certificate is counted", || {
        refused(target) > before
    });
    assert!(
        group
            .monitor(target)
            .last_refusal()
            .unwrap()
            .contains("TLS")
    );
    assert_group_intact(&group, "a certificate of another CA");

    // Node 2's certificate claiming to be node 3 (or the target's other peer).
    // The other follower: a member whose certificate the attacker holds (not the leader's,
    // whose certificate can do anything a leader may).
    let holder = 6 - leader - target;
    let claimed = leader;
    let before = refused(target);
    let (_, answer) = handshake_as(
        addr,
        &node_files(&group, holder),
        Handshake {
            cluster: CLUSTER,
            from: claimed,
            to: target,
        },
    );
    let answer = String::from_utf8(answer.unwrap()).unwrap();
    assert!(
        answer.starts_with("NO") && answer.contains(&format!("claims to be node {claimed}")),
        "{answer}"
    );
    wait_until("the impostor is counted", || refused(target) > before);
    assert_group_intact(&group, "an impostor");

    // An authenticated member that misbehaves: what it sends is refused at the step boundary,
    // counted, and changes nothing.
    let status = group.node(target).status().unwrap();
    let term = status.term.get();
    let mut add_66 = ConfChangeV2::default();
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ConfChangeType::AddNode);
    single.node_id = 66;
    add_66.mut_changes().push(single);
    let mut propose = message(MessageType::MsgPropose, holder, target, 0);
    let mut entry = Entry::default();
    entry.set_entry_type(EntryType::EntryConfChangeV2);
    entry.data = add_66.write_to_bytes().unwrap().into();
    propose.mut_entries().push(entry);
    let mut commit = message(MessageType::MsgHeartbeat, holder, target, term);
    commit.commit = 1 << 40;
    let forged = [
        propose,
        message(MessageType::MsgHeartbeat, holder, target, (1 << 63) + 1),
        commit,
        message(MessageType::MsgTransferLeader, holder, target, term),
        message(MessageType::MsgTimeoutNow, holder, target, term),
        message(MessageType::MsgHup, holder, target, term),
    ];
    let before = group.node(target).status().unwrap().refused_messages;
    let mut tls = member_connection(&group, holder, target);
    for m in &forged {
        tls.write_all(&frame_of(m)).unwrap();
    }
    tls.flush().unwrap();
    wait_until("every forged message is refused", || {
        group.node(target).status().unwrap().refused_messages >= before + forged.len() as u64
    });
    let status = group.node(target).status().unwrap();
    assert!(
        status
            .last_refusal
            .unwrap()
            .contains(&format!("node {holder}"))
    );
    assert_group_intact(&group, "forged messages from a member");
    // The same forged proposal sent to the leader changes nothing either.
    let mut tls = member_connection(&group, target, leader);
    let mut propose = forged[0].clone();
    propose.from = target;
    propose.to = leader;
    tls.write_all(&frame_of(&propose)).unwrap();
    tls.flush().unwrap();
    wait_until("the leader refuses the proposal", || {
        group.node(leader).status().unwrap().refused_messages >= 1
    });
    assert_group_intact(&group, "a forged proposal to the leader");

    // Frames that are not messages, or too large: the connection is cut, the node goes on.
    let broken = count(group.monitor(target), |s| &s.broken);
    let mut tls = member_connection(&group, holder, target);
    tls.write_all(&u32::MAX.to_le_bytes()).unwrap();
    tls.flush().unwrap();
    wait_until("the oversized frame cuts the connection", || {
        count(group.monitor(target), |s| &s.broken) > broken
    });
    // Two million empty entries in 4 MiB (2 bytes each on the wire, some 120 decoded): cut
    // off before it is decoded.
    let broken = count(group.monitor(target), |s| &s.broken);
    let mut tls = member_connection(&group, holder, target);
    let payload = [0x3a_u8, 0x00].repeat(2_000_000);
    let mut frame = Vec::new();
    write_frame(&mut frame, &payload).unwrap();
    tls.write_all(&frame).unwrap();
    tls.flush().unwrap();
    wait_until("the entry bomb cuts the connection", || {
        count(group.monitor(target), |s| &s.broken) > broken
    });
    assert!(
        group
            .monitor(target)
            .last_refusal()
            .unwrap()
            .contains("entries")
    );
    assert_group_intact(&group, "an oversized frame");
}
