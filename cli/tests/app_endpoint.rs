//! `fencekit node --app-listen`: the node as a sidecar of a local application that links
//! nothing. Leadership with its token and a lease deadline on CLOCK_BOOTTIME, a long poll that
//! wakes on a change, propose, and what a careless caller or another local user gets.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets an error should stop right there"
)]

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Group, assert_one_line_error, fencekit};
use serde_json::Value;

/// One request over a Unix socket: status and JSON body.
fn call(socket: &Path, method: &str, path: &str) -> (u16, Value) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(70)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn boottime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write to.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    assert_eq!(read, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sockets(root: &Path) -> Vec<PathBuf> {
    (1..=3)
        .map(|n| root.join(format!("app-{n}.sock")))
        .collect()
}

/// The node whose endpoint says it leads, once exactly one does, and its answer.
fn leader(sockets: &[PathBuf], except: Option<usize>) -> (usize, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leaders: Vec<(usize, Value)> = (0..sockets.len())
            .filter(|&i| Some(i) != except && sockets[i].exists())
            .filter_map(|i| {
                let (status, body) = call(&sockets[i], "GET", "/v1/leadership");
                (status == 200 && body["leader"] == true).then_some((i, body))
            })
            .collect();
        if leaders.len() == 1 {
            return leaders.into_iter().next().unwrap();
        }
        assert!(Instant::now() < deadline, "no single leader: {leaders:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_application_leads_by_the_deadline_and_wakes_on_a_change() {
    let root = tempfile::tempdir().unwrap();
    let mut group = Group::start(
        root.path(),
        3,
        &[
            "--app-listen",
            &format!("unix:{}/app-{{n}}.sock", root.path().display()),
        ],
    );
    let sockets = sockets(root.path());
    let before = boottime_ns();
    let (first, answer) = leader(&sockets, None);
    let after = boottime_ns();
    assert_eq!(answer["holder"], (first + 1) as u64, "{answer}");
    assert_eq!(answer["node"], (first + 1) as u64);
    assert_eq!(answer["source"], "fencekit:1");
    let deadline = answer["lease_deadline_boottime_ns"].as_u64().unwrap();
    assert!(
        deadline > before,
        "the deadline is on CLOCK_BOOTTIME: {answer}"
    );
    assert!(deadline < after + 30_000_000_000, "{answer}");
    let generation = answer["generation"].as_u64().unwrap();

    // Only this user may connect: the socket is 0600, and a socket opened to others by
    // mistake (chmod) still serves no other user.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&sockets[first])
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt as _;
        let opened = |path: &Path, mode| {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        opened(root.path(), 0o711);
        opened(&sockets[first], 0o666);
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--unix-socket")
            .arg(&sockets[first])
            .arg("http://app/v1/leadership")
            .uid(65534)
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        assert_ne!(code, "200", "another user was answered");
        opened(&sockets[first], 0o600);
        opened(root.path(), 0o700);
    }

    // A follower names the leader; proposing there is refused, on the leader it commits.
    let follower = (first + 1) % 3;
    let (_, view) = call(&sockets[follower], "GET", "/v1/leadership");
    assert_eq!(view["leader"], false);
    assert_eq!(view["leader_id"], (first + 1) as u64);
    let (status, body) = call(&sockets[follower], "POST", "/v1/propose?data=job-1");
    assert_eq!(status, 409, "{body}");
    let (status, body) = call(&sockets[first], "POST", "/v1/propose?data_hex=6a6f622d31");
    assert_eq!(status, 200, "{body}");
    assert!(body["index"].as_u64().unwrap() > 0);

    // A long poll on the follower wakes when the leader dies, well before its wait ends.
    let version = view["version"].as_u64().unwrap();
    let poll_socket = sockets[follower].clone();
    let poll = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = call(
            &poll_socket,
            "GET",
            &format!("/v1/leadership?wait_ms=20000&version={version}"),
        );
        (started.elapsed(), answer)
    });
    std::thread::sleep(Duration::from_millis(300));
    group.kill(first + 1);
    let (waited, (status, woke)) = poll.join().unwrap();
    assert_eq!(status, 200);
    assert!(woke["version"].as_u64().unwrap() > version, "{woke}");
    assert!(waited < Duration::from_secs(15), "{waited:?}");
    let (_, next) = leader(&sockets, Some(first));
    assert!(next["generation"].as_u64().unwrap() > generation, "{next}");

    // A poll with nothing to wait for answers when its time is up, with the same version
    // (tried again if who leads, as this node sees it, was still settling).
    let quiet = (0..10).any(|_| {
        let (_, now) = call(&sockets[follower], "GET", "/v1/leadership");
        let version = now["version"].as_u64().unwrap();
        let started = Instant::now();
        let (_, same) = call(
            &sockets[follower],
            "GET",
            &format!("/v1/leadership?wait_ms=300&version={version}"),
        );
        let unchanged = same["version"].as_u64().unwrap() == version;
        assert!(!unchanged || started.elapsed() >= Duration::from_millis(290));
        unchanged
    });
    assert!(quiet, "the version never stood still for 300 ms");

    // Careless requests get a clear 4xx.
    for (method, path, status) in [
        ("GET", "/v1/leadership?wait_ms=99999999", 400),
        ("GET", "/v1/leadership?wait_ms=10&version=x", 400),
        ("POST", "/v1/propose?data_hex=zz", 400),
        ("POST", "/v1/propose?data=a&data_hex=61", 400),
        ("POST", "/v1/propose", 400),
        ("POST", "/v1/propose?data=", 400),
        ("GET", "/v1/propose?data=a", 404),
        ("GET", "/v1/nothing", 404),
    ] {
        let (got, body) = call(&sockets[follower], method, path);
        assert_eq!(got, status, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
}

#[test]
fn a_careless_app_listen_is_refused_at_start() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let node = |extra: &[&str]| {
        let mut args = vec![
            "node",
            "--id",
            "1",
            "--peers",
            "1=127.0.0.1:1",
            "--data",
            data.to_str().unwrap(),
            "--status-addr",
            "127.0.0.1:0",
            "--insecure",
        ];
        args.extend_from_slice(extra);
        fencekit(&args)
    };
    assert_one_line_error(
        &node(&["--app-listen", "127.0.0.1:7"]),
        "needs --app-token-file",
    );
    assert_one_line_error(&node(&["--app-listen", "0.0.0.0:7"]), "loopback");
    assert_one_line_error(&node(&["--app-listen", "unix:"]), "socket's path");
    assert_one_line_error(&node(&["--app-listen", "localhost"]), "unix:/path");
    // A directory others may write: they could put a socket of their own in its place.
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = node(&[
        "--app-listen",
        &format!("unix:{}/app.sock", shared.display()),
    ]);
    assert!(!out.status.success());
    assert!(
        common::text(&out).contains("can be written by others"),
        "{}",
        common::text(&out)
    );
    // A symbolic link on the way that another user owns: they could point it elsewhere.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let safe = root.path().join("safe");
        std::fs::create_dir(&safe).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&safe, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), None).unwrap();
        let out = node(&["--app-listen", &format!("unix:{}/app.sock", link.display())]);
        assert!(!out.status.success());
        assert!(
            common::text(&out).contains("symbolic link"),
            "{}",
            common::text(&out)
        );
    }
    let file = root.path().join("not-a-socket");
    std::fs::write(&file, "precious").unwrap();
    let out = node(&["--app-listen", &format!("unix:{}", file.display())]);
    assert!(!out.status.success());
    assert!(
        common::text(&out).contains("is not a socket"),
        "{}",
        common::text(&out)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
}

#[test]
fn a_tcp_endpoint_answers_only_requests_bearing_its_token() {
    let root = tempfile::tempdir().unwrap();
    let token = root.path().join("app.token");
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token)
            .unwrap();
        f.write_all(b"app-token-0123456789abcdef").unwrap();
    }
    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _group = Group::start(
        root.path(),
        1,
        &[
            "--app-listen",
            &addr,
            "--app-token-file",
            token.to_str().unwrap(),
        ],
    );
    let url = format!("http://{addr}/v1/leadership");
    let ask = |bearer: Option<&str>| {
        let mut request = common::agent().get(&url);
        if let Some(value) = bearer {
            request = request.header("Authorization", value);
        }
        request
            .call()
            .map(|mut r| (r.status().as_u16(), r.body_mut().read_to_string().unwrap()))
    };
    let good = "Bearer app-token-0123456789abcdef";
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match ask(Some(good)) {
            Ok((200, body)) => break body,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("{other:?}"),
        }
    };
    assert!(answer.contains("\"leader\""), "{answer}");
    for bearer in [None, Some("Bearer wrong-token-0123456789abc")] {
        assert_eq!(ask(bearer).unwrap().0, 401);
    }
}
