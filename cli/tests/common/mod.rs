//! What the fencekit command's integration tests share: running the binary, free ports, and
//! reading what it said.

#![allow(dead_code, reason = "each test file uses its own part")]

use std::net::TcpListener;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

pub(crate) const FENCEKIT: &str = env!("CARGO_BIN_EXE_fencekit");

/// A port free to listen on, below Linux's ephemeral range (32768 and up by default): a port
/// the kernel hands out for port 0 can be taken, before a server binds it, as the local port
/// of a client connection of a test running beside it (some open hundreds).
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()) << 32
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into());
    for _ in 0..1000 {
        // splitmix64 over a per-process counter: distinct draws across threads and processes.
        let mut x = seed.wrapping_add(
            DRAWS
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let port = 20_000 + (x % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000")
}

/// Runs `fencekit ARGS` to the end.
pub(crate) fn fencekit(args: &[&str]) -> Output {
    Command::new(FENCEKIT)
        .args(args)
        .output()
        .expect("run fencekit")
}

/// What a run printed, stdout then stderr.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a run failed with one line on stderr containing `says`, and nothing else.
pub(crate) fn assert_one_line_error(out: &Output, says: &str) {
    let said = text(out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(says), "expected {says:?} in: {said}");
    assert_eq!(said.trim().lines().count(), 1, "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

/// A process killed when dropped.
pub(crate) struct Daemon(pub(crate) Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `fencekit ARGS` in the background, quietly.
pub(crate) fn spawn(args: &[&str]) -> Daemon {
    let child = std::process::Command::new(FENCEKIT)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn fencekit");
    Daemon(child)
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn read(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
) -> (u16, String) {
    let response = response.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .read_to_string()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    (status, body)
}

/// `GET http://ADDR/PATH`: status and body.
pub(crate) fn get(addr: &str, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    read(agent().get(&url).call(), &url)
}

/// `POST http://ADDR/PATH` with an empty body: status and body.
pub(crate) fn post(addr: &str, path: &str) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    read(agent().post(&url).send_empty(), &url)
}

/// An HTTPS client of a store with the certificates of [`certs`]: it trusts their CA only,
/// and shows node `node`'s certificate (or none).
pub(crate) struct Https(ureq::Agent);

impl Https {
    pub(crate) fn new(certs: &std::path::Path, node: Option<usize>) -> Https {
        Https::with_timeout(certs, node, Duration::from_secs(5))
    }

    /// As [`Https::new`], giving up on each call after `timeout`.
    pub(crate) fn with_timeout(
        certs: &std::path::Path,
        node: Option<usize>,
        timeout: Duration,
    ) -> Https {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
        let read =
            |p: std::path::PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        let ca = Certificate::from_pem(&read(certs.join("ca.crt"))).expect("the CA");
        let client = node.map(|n| {
            let dir = certs.join(format!("node-{n}"));
            let cert = Certificate::from_pem(&read(dir.join("node.crt"))).expect("a certificate");
            let key = PrivateKey::from_pem(&read(dir.join("node.key"))).expect("a key");
            ClientCert::new_with_certs(&[cert], key)
        });
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .root_certs(RootCerts::new_with_certs(&[ca]))
            .client_cert(client)
            .build();
        Https(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(timeout))
                .tls_config(tls)
                .build()
                .into(),
        )
    }

    pub(crate) fn get(&self, addr: &str, path: &str) -> (u16, String) {
        let url = format!("https://{addr}{path}");
        read(self.0.get(&url).call(), &url)
    }

    /// `GET`, or why the exchange failed (a timeout, say).
    pub(crate) fn try_get(&self, addr: &str, path: &str) -> Result<(u16, String), String> {
        let url = format!("https://{addr}{path}");
        let response = self.0.get(&url).call().map_err(|e| e.to_string())?;
        Ok(read(Ok(response), &url))
    }

    /// `POST`, or why the exchange failed (a refused handshake, say).
    pub(crate) fn try_post(&self, addr: &str, path: &str) -> Result<(u16, String), String> {
        let url = format!("https://{addr}{path}");
        let response = self.0.post(&url).send_empty().map_err(|e| e.to_string())?;
        Ok(read(Ok(response), &url))
    }

    pub(crate) fn post(&self, addr: &str, path: &str) -> (u16, String) {
        let url = format!("https://{addr}{path}");
        read(self.0.post(&url).send_empty(), &url)
    }

    /// Waits up to 10 s for the store at `addr` to answer /healthz.
    pub(crate) fn wait_healthy(&self, addr: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("https://{addr}/healthz");
        while self.0.get(&url).call().is_err() {
            assert!(Instant::now() < deadline, "{addr} did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `--tls-dir` for the store with the certificates of [`certs`].
pub(crate) fn store_tls_dir(certs: &std::path::Path) -> String {
    certs.join("store").to_string_lossy().into_owned()
}

/// Starts `fencekit store --insecure` on `data` with `extra` options, on a free port, and
/// waits until it answers: the process and its address.
pub(crate) fn start_insecure_store(data: &std::path::Path, extra: &[&str]) -> (Daemon, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let data = data.to_string_lossy();
    let mut args = vec!["store", "--data", &data, "--listen", &addr, "--insecure"];
    args.extend_from_slice(extra);
    let daemon = spawn(&args);
    wait_healthy(&addr);
    (daemon, addr)
}

/// A store on `data` serving HTTPS with the TLS files under `certs`, once healthy: the daemon
/// and its address.
pub(crate) fn start_tls_store(data: &std::path::Path, certs: &std::path::Path) -> (Daemon, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let daemon = spawn(&[
        "store",
        "--data",
        &data.to_string_lossy(),
        "--listen",
        &addr,
        "--tls-dir",
        &store_tls_dir(certs),
    ]);
    Https::new(certs, None).wait_healthy(&addr);
    (daemon, addr)
}

/// The arguments of a one-node group: node 1 on `data`, serving status on `status`.
pub(crate) fn lone_node(data: &std::path::Path, status: &str) -> Vec<String> {
    [
        "node",
        "--id",
        "1",
        "--peers",
        &format!("1=127.0.0.1:{}", free_port()),
        "--data",
        &data.to_string_lossy(),
        "--status-addr",
        status,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Puts a FIFO at `path` (which must not exist): a file that would block whoever opens it.
pub(crate) fn mkfifo(path: &std::path::Path) {
    let made = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {path:?}");
}

/// Waits up to 10 s for `addr` to answer /healthz.
pub(crate) fn wait_healthy(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let url = format!("http://{addr}/healthz");
    while agent().get(&url).call().is_err() {
        assert!(Instant::now() < deadline, "{addr} did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes development certificates for nodes `1..=n` of cluster 1 under `root/certs` with
/// `fencekit certs init`, and returns the directory; node `i`'s are in `certs/node-<i>`.
pub(crate) fn certs(root: &std::path::Path, n: usize) -> std::path::PathBuf {
    let dir = root.join("certs");
    let nodes: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    let out = fencekit(&[
        "certs",
        "init",
        "--dir",
        &dir.to_string_lossy(),
        "--nodes",
        &nodes.join(","),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    dir
}

/// `--tls-dir` for node `id` with the certificates of [`certs`].
pub(crate) fn tls_dir(certs: &std::path::Path, id: usize) -> String {
    certs
        .join(format!("node-{id}"))
        .to_string_lossy()
        .into_owned()
}

/// A secure group of `fencekit node` processes on loopback (certificates from
/// `fencekit certs init`, nodes with `--tls-dir`), killed when dropped.
pub(crate) struct Group {
    children: Vec<Option<Child>>,
    args: Vec<Vec<String>>,
    /// Each node's --status-addr.
    pub(crate) status: Vec<String>,
    /// Each node's Raft address.
    pub(crate) raft: Vec<String>,
    /// Each node's --admin-addr (every node runs with --admin).
    pub(crate) admin: Vec<String>,
    /// The token of the admin endpoints.
    pub(crate) admin_token: String,
    /// Where node `n` appends its stderr (`node-<n>.stderr`), if [`Group::start_logged`].
    logs: Option<std::path::PathBuf>,
}

impl Group {
    /// Nodes `1..=size`, their data and certificates under `root`, each with `extra` options
    /// (`{n}` in them replaced by the node's number).
    pub(crate) fn start(root: &std::path::Path, size: usize, extra: &[&str]) -> Group {
        Group::start_with(root, size, extra, false)
    }

    /// As [`Group::start`], each node's stderr kept in `root/node-<n>.stderr` across restarts
    /// (read it with [`Group::stderr`]).
    pub(crate) fn start_logged(root: &std::path::Path, size: usize, extra: &[&str]) -> Group {
        Group::start_with(root, size, extra, true)
    }

    fn start_with(root: &std::path::Path, size: usize, extra: &[&str], logged: bool) -> Group {
        let certs = certs(root, size);
        let raft: Vec<String> = (0..size)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let status: Vec<String> = (0..size)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let admin: Vec<String> = (0..size)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let admin_token = format!("test-token-{}", std::process::id()).repeat(2);
        let token_file = root.join("admin.token");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&token_file)
                .and_then(|mut f| f.write_all(admin_token.as_bytes()))
                .expect("the admin token file");
        }
        let peers: Vec<String> = raft
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        let args = (0..size)
            .map(|i| {
                let mut args: Vec<String> = [
                    "node",
                    "--id",
                    &(i + 1).to_string(),
                    "--peers",
                    &peers.join(","),
                    "--status-addr",
                    &status[i],
                    "--tls-dir",
                    &tls_dir(&certs, i + 1),
                    "--data",
                    &root.join(format!("node-{}", i + 1)).to_string_lossy(),
                    "--admin",
                    "--admin-addr",
                    &admin[i],
                    "--admin-token-file",
                    &token_file.to_string_lossy(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                args.extend(extra.iter().map(|s| s.replace("{n}", &(i + 1).to_string())));
                args
            })
            .collect();
        let mut group = Group {
            children: Vec::new(),
            args,
            status,
            raft,
            admin,
            admin_token,
            logs: logged.then(|| root.to_path_buf()),
        };
        for n in 1..=size {
            let child = group.spawn(n);
            group.children.push(Some(child));
        }
        group
    }

    fn spawn(&self, n: usize) -> Child {
        let stderr = match &self.logs {
            Some(dir) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("node-{n}.stderr")))
                .expect("a stderr file")
                .into(),
            None => std::process::Stdio::null(),
        };
        Command::new(FENCEKIT)
            .args(&self.args[n - 1])
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn fencekit node")
    }

    /// What node `n` wrote to stderr so far (a group started with [`Group::start_logged`]).
    pub(crate) fn stderr(&self, n: usize) -> String {
        let dir = self
            .logs
            .as_ref()
            .expect("a group started with start_logged");
        std::fs::read_to_string(dir.join(format!("node-{n}.stderr"))).unwrap_or_default()
    }

    /// `POST` to node `n`'s admin endpoint with the token: status and body.
    pub(crate) fn admin_post(&self, n: usize, path: &str) -> (u16, String) {
        let url = format!("http://{}{path}", self.admin[n - 1]);
        let request = agent()
            .post(&url)
            .header("Authorization", format!("Bearer {}", self.admin_token));
        read(request.send_empty(), &url)
    }

    /// Node `n`'s process id.
    pub(crate) fn pid(&self, n: usize) -> u32 {
        self.children[n - 1].as_ref().expect("running").id()
    }

    /// Kills node `n` (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.children[n - 1].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills node `n` and starts it again on its data.
    pub(crate) fn restart(&mut self, n: usize) {
        self.kill(n);
        let child = self.spawn(n);
        self.children[n - 1] = Some(child);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for n in 1..=self.children.len() {
            self.kill(n);
        }
    }
}
