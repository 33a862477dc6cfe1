//! The HTTP surfaces of `fencekit store` and `fencekit node` against hostile clients, as real
//! processes on loopback: after each attack the server answers /healthz within a second, its
//! memory stays bounded, and the store's mark has not moved.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Daemon, Group, free_port, get, post, spawn, wait_healthy};

fn start_store(data: &Path) -> (Daemon, String) {
    common::start_insecure_store(data, &[])
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// /healthz answers 200 within a second, on a new connection.
fn healthy_within_a_second(addr: &str, after: &str) {
    let started = Instant::now();
    let (code, body) = get(addr, "/healthz");
    assert_eq!(code, 200, "after {after}: {body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "after {after}: /healthz took {:?}",
        started.elapsed()
    );
}

/// Sends `bytes` on a new connection and reads what comes back within `wait` (until the
/// server closes, or the wait ends).
fn raw(addr: &str, bytes: &[u8], wait: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(wait)).expect("timeout");
    // The server may close before taking everything: a refused write is its answer too.
    let _ = stream.write_all(bytes);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

/// The store's current mark, as a stale-proof request shows it: a `begin` at generation 1
/// by holder 1 answers with the generation that refused it (or accepts, if none is above 1).
fn mark_generation(addr: &str) -> u64 {
    let (_, body) = post(addr, "/begin?job=probe&run=0&holder=1&generation=1");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    answer["generation"].as_u64().expect("a generation")
}

#[test]
fn bodies_huge_lengths_and_huge_heads_are_refused_without_buffering_them() {
    let root = tempfile::tempdir().unwrap();
    let (store, addr) = start_store(&root.path().join("s"));
    let (code, body) = post(&addr, "/begin?job=j&run=1&holder=2&generation=5");
    assert_eq!(code, 200, "{body}");
    let before = rss_kib(store.0.id());

    for length in ["1099511627776", "18446744073709551615"] {
        let request = format!(
            "POST /complete?job=j&run=1&holder=2&generation=5 HTTP/1.1\r\nHost: x\r\n\
             Content-Length: {length}\r\n\r\n"
        );
        let answer = raw(&addr, request.as_bytes(), Duration::from_secs(2));
        // 413 (no endpoint takes a body), or 431 from hyper for a length it will not
        // represent: refused either way, with the connection closed.
        let line = status_line(&answer);
        assert!(
            line.contains(" 413 ") || line.contains(" 431 "),
            "Content-Length {length}: {answer}"
        );
        healthy_within_a_second(&addr, &format!("Content-Length: {length}"));
    }
    // An overflowing length is not even a number to hyper: 400, never a crash.
    let answer = raw(
        &addr,
        b"POST /complete HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(status_line(&answer).contains(" 400 "), "{answer}");

    // A chunked body is a body too.
    let answer = raw(
        &addr,
        b"POST /complete?job=j&run=1&holder=2&generation=5 HTTP/1.1\r\nHost: x\r\n\
          Transfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(status_line(&answer).contains(" 413 "), "{answer}");

    // A 64 MB request line: refused after 16 KiB, without the server holding it.
    let mut line = b"GET /ledger?x=".to_vec();
    line.resize(64 << 20, b'a');
    let answer = raw(&addr, &line, Duration::from_secs(5));
    assert!(
        answer.is_empty()
            || status_line(&answer).contains(" 431 ")
            || status_line(&answer).contains(" 414 "),
        "{}",
        &answer[..answer.len().min(200)]
    );
    healthy_within_a_second(&addr, "a 64 MB request line");
    // And a head of many small headers.
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..100 {
        head.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let answer = raw(&addr, &head, Duration::from_secs(2));
    assert!(status_line(&answer).contains(" 431 "), "{answer}");

    let after = rss_kib(store.0.id());
    assert!(
        after < before + 32 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
    assert_eq!(mark_generation(&addr), 5, "no attack moved the mark");
    let (_, ledger) = get(&addr, "/ledger");
    assert!(
        !ledger.contains("\"run\":1"),
        "nothing was recorded: {ledger}"
    );
}

#[test]
fn a_client_that_never_sends_its_body_or_its_head_blocks_nobody() {
    let root = tempfile::tempdir().unwrap();
    let (_store, addr) = start_store(&root.path().join("s"));
    // A promised body that never comes is refused at once, not waited for.
    let mut promised = TcpStream::connect(&addr).unwrap();
    promised
        .write_all(
            b"POST /begin?job=j&run=1&holder=2&generation=5 HTTP/1.1\r\nHost: x\r\n\
              Content-Length: 100000\r\n\r\n",
        )
        .unwrap();
    // Half a head, held open.
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"POST /begin?job=j&run=1&holder=2&gen")
        .unwrap();
    // Idle connections.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let started = Instant::now();
    let (code, body) = post(&addr, "/begin?job=k&run=1&holder=2&generation=5");
    assert_eq!(code, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    healthy_within_a_second(&addr, "a held body, a half head and 100 idle connections");

    // The server closes what sends nothing, after its header timeout (10 s).
    half.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut rest = Vec::new();
    let closed_at = Instant::now();
    let _ = half.read_to_end(&mut rest);
    assert!(
        closed_at.elapsed() < Duration::from_secs(14),
        "a half-sent head was kept {:?}",
        closed_at.elapsed()
    );
    drop((idle, promised));
}

#[test]
fn connections_beyond_the_limit_are_answered_503_and_the_store_recovers() {
    let root = tempfile::tempdir().unwrap();
    let (_store, addr) = start_store(&root.path().join("s"));
    // Up to the limit (512), then some: the ones beyond are answered 503 at once.
    let mut held = Vec::new();
    for _ in 0..512 {
        held.push(TcpStream::connect(&addr).unwrap());
    }
    // Let the server accept them all.
    std::thread::sleep(Duration::from_millis(300));
    let answer = raw(
        &addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(status_line(&answer).contains(" 503 "), "{answer}");
    assert!(
        answer.contains("Retry-After: 1") || answer.contains("retry-after: 1"),
        "{answer}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    healthy_within_a_second(&addr, "512 connections held and closed");
}

#[test]
fn sixty_four_clients_at_once_are_all_answered() {
    let root = tempfile::tempdir().unwrap();
    let (_store, addr) = start_store(&root.path().join("s"));
    let (code, _) = post(&addr, "/begin?job=j&run=0&holder=1&generation=1");
    assert_eq!(code, 200);
    let started = Instant::now();
    let clients: Vec<_> = (0..64)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for run in 0..10 {
                    let (code, body) = post(
                        &addr,
                        &format!("/complete?job=c{c}&run={run}&holder=1&generation=1"),
                    );
                    assert_eq!(code, 200, "{body}");
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "640 completions took {:?}",
        started.elapsed()
    );
    let (_, ledger) = get(&addr, "/ledger?limit=1000");
    let page: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(640));
}

#[test]
fn query_strings_are_parsed_strictly() {
    let root = tempfile::tempdir().unwrap();
    let (_store, addr) = start_store(&root.path().join("s"));
    for (path, says) in [
        (
            "/complete?job=j&run=0&holder=1&holder=2&generation=1",
            "holder\\\" twice",
        ),
        (
            "/complete?job=j&run=0&holder=1&generation=1&a=1&b=1&c=1&d=1&e=1&f=1&g=1&h=1&i=1&k=1&l=1&m=1&n=1",
            "more than 16 parameters",
        ),
        ("/ledger?limit=0", "limit=0"),
        ("/ledger?after=-1", "not a number"),
        (
            "/complete?job=j&run=0&holder=1&generation=99999999999999999999",
            "give a generation",
        ),
    ] {
        let (code, body) = if path.starts_with("/ledger") {
            get(&addr, path)
        } else {
            post(&addr, path)
        };
        assert_eq!(code, 400, "{path}: {body}");
        assert!(body.contains(says), "{path}: {body}");
    }
}

#[test]
fn admin_endpoints_are_off_by_default_and_need_the_token_when_on() {
    let root = tempfile::tempdir().unwrap();
    // Without --admin: 404 on the status listener, and nothing else listens.
    let status = format!("127.0.0.1:{}", free_port());
    let mut plain = common::lone_node(&root.path().join("plain"), &status);
    plain.push("--insecure".into());
    let _plain = spawn(&plain.iter().map(String::as_str).collect::<Vec<_>>());
    wait_healthy(&status);
    for path in ["/admin/clock?rate=0.001", "/admin/partition?drop=2,3"] {
        let (code, body) = post(&status, path);
        assert_eq!(code, 404, "{path}: {body}");
        assert!(body.contains("--admin"), "{body}");
    }
    let (_, view) = get(&status, "/status");
    assert!(view.contains("\"clock_rate\":1.0"), "{view}");
    let head = raw(
        &status,
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(
        status_line(&head).contains(" 200 "),
        "probes may use HEAD: {head}"
    );
    assert!(!head.contains("ok\n"), "no body to HEAD: {head}");
    // The node's listener has the store's limits.
    let answer = raw(
        &status,
        b"POST /status HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
        Duration::from_secs(2),
    );
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let held: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(&status).unwrap())
        .collect();
    healthy_within_a_second(&status, "a huge length and 64 idle connections to a node");
    drop(held);

    // With --admin: on its own listener, 401 without the token or with another.
    let group = Group::start(&root.path().join("group"), 1, &[]);
    wait_healthy(&group.status[0]);
    let admin = &group.admin[0];
    let (code, _) = post(&group.status[0], "/admin/clock?rate=1.01");
    assert_eq!(code, 404, "never on the status listener");
    let (code, body) = post(admin, "/admin/clock?rate=0.001");
    assert_eq!(code, 401, "{body}");
    let url = format!("http://{admin}/admin/clock?rate=0.001");
    let wrong = ureq::post(&url)
        .header("Authorization", "Bearer not-the-token-at-all")
        .config()
        .http_status_as_error(false)
        .build()
        .send_empty()
        .expect("an answer");
    assert_eq!(wrong.status().as_u16(), 401);
    let (_, view) = get(&group.status[0], "/status");
    assert!(
        view.contains("\"clock_rate\":1.0"),
        "nothing changed: {view}"
    );
    for (header, code) in [
        (format!("bearer {}", group.admin_token), 200),
        (format!("BEARER  {}", group.admin_token), 200),
        (format!("Basic {}", group.admin_token), 400),
    ] {
        let url = format!("http://{admin}/admin/partition?drop=");
        let answer = ureq::post(&url)
            .header("Authorization", &header)
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty()
            .expect("an answer");
        assert_eq!(answer.status().as_u16(), code, "{header}");
    }
    let twice = raw(
        admin,
        format!(
            "POST /admin/clock?rate=0.5 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {0}\r\n\
             Authorization: Bearer {0}\r\n\r\n",
            group.admin_token
        )
        .as_bytes(),
        Duration::from_secs(2),
    );
    assert!(status_line(&twice).contains(" 400 "), "{twice}");
    let (code, _) = group.admin_post(1, "/admin/clock?rate=5e-324");
    assert_eq!(code, 400, "a clock frozen for good is no drill");
    let (code, body) = group.admin_post(1, "/admin/clock?rate=1.04");
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let allowed = answer["peer_rates_allowed"].as_array().unwrap();
    let (low, high) = (allowed[0].as_f64().unwrap(), allowed[1].as_f64().unwrap());
    // 0.96 is within 5% of true time, but not of 1.04: the pairwise bound says so.
    assert!(low > 0.96 && high > 1.04, "{body}");
}

#[test]
fn a_weak_or_exposed_admin_token_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let token = root.path().join("token");
    let node = |token: &Path| {
        let mut args = common::lone_node(&root.path().join("n"), "127.0.0.1:0");
        args.extend(["--insecure", "--admin", "--admin-token-file"].map(str::to_owned));
        args.push(token.to_string_lossy().into_owned());
        common::fencekit(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(&token, "short").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    common::assert_one_line_error(&node(&token), "16 to 256 printable");
    std::fs::write(&token, "a-long-enough-token-but-readable").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    common::assert_one_line_error(&node(&token), "readable by its group or others");
    // A FIFO would block the read for ever: refused at once.
    std::fs::remove_file(&token).unwrap();
    common::mkfifo(&token);
    common::assert_one_line_error(&node(&token), "not a regular file");
    let out = common::fencekit(&["node", "--id", "1", "--admin"]);
    assert!(!out.status.success());
    assert!(
        common::text(&out).contains("--admin-token-file"),
        "{}",
        common::text(&out)
    );
}

/// Clients that go away abruptly (a reset: a process killed with unread bytes on its socket)
/// leave the store writing its TLS close_notify to dead sockets. That must cost it nothing: the
/// write fails with EPIPE, and no SIGPIPE kills the process. It did, for any client able to
/// finish a handshake (no certificate needed for /healthz); the torture run found it, a store
/// dying of signal 13.
#[test]
fn clients_that_reset_their_connections_do_not_kill_the_store() {
    let root = tempfile::tempdir().expect("tempdir");
    let certs = common::certs(root.path(), 1);
    let addr = format!("127.0.0.1:{}", free_port());
    let data = root.path().join("store").to_string_lossy().into_owned();
    let tls = common::store_tls_dir(&certs);
    let store = spawn(&[
        "store",
        "--data",
        &data,
        "--listen",
        &addr,
        "--tls-dir",
        &tls,
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::Https::new(&certs, Some(1))
        .try_get(&addr, "/healthz")
        .is_err()
    {
        assert!(Instant::now() < deadline, "the store does not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Clients with a TLS connection each.
    let config = tls_client_config(&certs);
    let mut clients: Vec<(rustls::ClientConnection, TcpStream)> = (0..16)
        .map(|_| {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
            let mut tls = rustls::ClientConnection::new(config.clone(), name).expect("client");
            let mut socket = TcpStream::connect(&addr).expect("connect");
            while tls.is_handshaking() {
                tls.complete_io(&mut socket).expect("handshake");
            }
            (tls, socket)
        })
        .collect();
    // Each asks, reads the answer, then goes away abruptly (a reset: a process killed with
    // unread bytes on its socket).
    for (tls, socket) in &mut clients {
        let mut stream = rustls::Stream::new(tls, socket);
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let mut answer = [0u8; 512];
        let read = stream.read(&mut answer).expect("answer");
        assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
        socket2::SockRef::from(&*socket)
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
    }
    drop(clients);
    std::thread::sleep(Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(500));
    let mut store = store;
    assert!(
        store.0.try_wait().expect("wait").is_none(),
        "the store died when it resumed"
    );
    let (code, _) = common::Https::new(&certs, Some(1)).get(&addr, "/healthz");
    assert_eq!(code, 200);
}

/// A TLS client configuration trusting `certs`' CA and showing node 1's certificate.
fn tls_client_config(certs: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(certs.join("ca.crt")).expect("CA"))
        .expect("root");
    let chain = vec![CertificateDer::from_pem_file(certs.join("node-1/node.crt")).expect("cert")];
    let key = PrivateKeyDer::from_pem_file(certs.join("node-1/node.key")).expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
    std::sync::Arc::new(config)
}
