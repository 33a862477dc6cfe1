//! Fenced completions per second through a real `fencekit store` over HTTPS, beside what the
//! fence costs (the same store `--unfenced`) and what SQLite alone does with the same rows.
//!
//! - `store_https/complete/fenced/N`: N client threads (1, 8, 64), each with its own
//!   keep-alive HTTPS agent showing node 1's certificate, send `POST /complete` with the
//!   current token (generation 1, set by one `/begin` first); every answer must be 200.
//! - `store_https/complete/unfenced/64`: the same at 64 clients on an `--unfenced` store.
//! - `sqlite_alone/txn_per_row` and `sqlite_alone/batch_64`: the ledger's rows written straight
//!   to SQLite (WAL, `synchronous=FULL`, the ledger's schema and statements), one transaction
//!   per row and 64 rows per transaction.
//!
//! Before the benches it counts the store's fdatasync and fsync calls per completion at 1 and
//! 64 clients under `strace` (if it is installed and may trace; `FENCEKIT_BENCH_STRACE=0`
//! skips it). After each client count it prints the requests' latency percentiles.
//!
//! `sync && cargo bench -p fencekit-cli --bench store_load`; results in benches/README.md.
//! `FENCEKIT_BENCH_DIR` puts the files on another file system.

#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented pub fn"
)]
#![allow(
    clippy::unwrap_used,
    reason = "a bench: any failure should stop it loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, params};

const FENCEKIT: &str = env!("CARGO_BIN_EXE_fencekit");

/// The generation every completion carries (node 1's, set by the first `/begin`).
const GENERATION: u64 = 1;

/// A directory for the bench's files, under `FENCEKIT_BENCH_DIR` if set.
fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("FENCEKIT_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("create a bench directory")
}

/// Flushes other dirty pages first: fsync measured during writeback says nothing of the store.
fn settle_disk() {
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(500));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `fencekit certs init` for nodes 1 to 3 under `root/certs`.
fn make_certs(root: &Path) -> PathBuf {
    let dir = root.join("certs");
    let out = Command::new(FENCEKIT)
        .args(["certs", "init", "--dir"])
        .arg(&dir)
        .args(["--nodes", "1,2,3"])
        .output()
        .expect("run fencekit certs init");
    assert!(
        out.status.success(),
        "fencekit certs init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

/// An HTTPS agent that trusts the certificates' CA only and shows node `node`'s certificate
/// (or none), keeping its connection alive between requests.
fn agent(certs: &Path, node: Option<u32>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let read = |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
    let ca = Certificate::from_pem(&read(certs.join("ca.crt"))).expect("the CA");
    let client = node.map(|n| {
        let dir = certs.join(format!("node-{n}"));
        let cert = Certificate::from_pem(&read(dir.join("node.crt"))).expect("a certificate");
        let key = PrivateKey::from_pem(&read(dir.join("node.key"))).expect("a key");
        ClientCert::new_with_certs(&[cert], key)
    });
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(RootCerts::new_with_certs(&[ca]))
        .client_cert(client)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        // Longer than the store's own 30 s limit on a decision: its answer, not ours, counts.
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(tls)
        .build()
        .into()
}

/// `POST url` with an empty body: status and body, or why the exchange failed.
fn post(agent: &ureq::Agent, url: &str) -> Result<(u16, String), String> {
    let response = agent
        .post(url)
        .send_empty()
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    Ok((status, body))
}

/// A running `fencekit store` (possibly under a wrapper such as strace), stopped when dropped.
struct Store {
    child: Child,
    /// `https://127.0.0.1:PORT`
    base: String,
    wrapped: bool,
    fenced: bool,
}

impl Store {
    /// Starts a store on `data` with the certificates `certs`, and sets the mark with one
    /// `/begin` as node 1 (a fenced store).
    fn start(certs: &Path, data: &Path, unfenced: bool, wrapper: &[String]) -> Store {
        let addr = format!("127.0.0.1:{}", free_port());
        let stderr = std::fs::File::create(data.with_extension("stderr")).expect("a stderr file");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(FENCEKIT);
                c
            }
            None => Command::new(FENCEKIT),
        };
        command
            .args(["store", "--data"])
            .arg(data)
            .args(["--listen", &addr, "--tls-dir"])
            .arg(certs.join("store"))
            .stdout(Stdio::null())
            .stderr(stderr);
        if unfenced {
            command.arg("--unfenced");
        }
        let child = command.spawn().expect("spawn fencekit store");
        let mut store = Store {
            child,
            base: format!("https://{addr}"),
            wrapped: !wrapper.is_empty(),
            fenced: !unfenced,
        };
        let probe = agent(certs, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while probe.get(format!("{}/healthz", store.base)).call().is_err() {
            if let Ok(Some(status)) = store.child.try_wait() {
                panic!(
                    "fencekit store exited ({status}): see {}",
                    data.with_extension("stderr").display()
                );
            }
            assert!(Instant::now() < deadline, "the store did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        if !unfenced {
            let url = format!(
                "{}/begin?job=bench&run=0&generation={GENERATION}",
                store.base
            );
            let (status, body) = post(&agent(certs, Some(1)), &url).unwrap();
            assert_eq!(status, 200, "{url}: {body}");
        }
        store
    }

    /// Stops the store with SIGTERM (a clean stop: the fence records its durable point) and
    /// waits for it, and for its wrapper.
    fn stop(mut self) {
        let pid = if self.wrapped {
            // The store is the wrapper's one child.
            let children = format!("/proc/{0}/task/{0}/children", self.child.id());
            std::fs::read_to_string(&children)
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        } else {
            i32::try_from(self.child.id()).ok()
        };
        if let Some(pid) = pid {
            // SAFETY: kill(2) with a process id this bench started (or its wrapper's child).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("store_load: the store did not stop within 10 s of SIGTERM: killed");
        // Drop kills it.
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a client thread did in one round: its requests' latencies, or the first failure.
type Round = Result<Vec<Duration>, String>;

/// `n` client threads, each with its own keep-alive HTTPS agent as node 1, made once; each
/// completes job `{prefix}c{client}`, runs 1, 2, 3 ... so no two completions name one run.
struct Clients {
    work: Vec<Sender<u64>>,
    done: Receiver<Round>,
    threads: Vec<JoinHandle<()>>,
    latencies: Vec<Duration>,
    what: String,
    /// The store's process id (none under a wrapper), for its CPU time.
    store_pid: Option<u32>,
    /// CPU time used so far by the store and by this process (the clients), and when.
    cpu_at_start: (Duration, Duration, Instant),
}

/// CPU time (user and system) a process used so far, from `/proc/PID/stat`.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the 3rd field, utime
    // and stime the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(fields.iter().sum::<u64>() as f64 / ticks)
}

impl Clients {
    fn new(certs: &Path, store: &Store, n: usize, prefix: &str, what: &str) -> Clients {
        let fenced = store.fenced;
        let (done_tx, done) = crossbeam_channel::unbounded();
        let mut work = Vec::new();
        let mut threads = Vec::new();
        for client in 0..n {
            let (tx, rx) = crossbeam_channel::bounded::<u64>(1);
            let agent = agent(certs, Some(1));
            let base = store.base.clone();
            let job = format!("{prefix}c{client}");
            let generation = if fenced {
                format!("&generation={GENERATION}")
            } else {
                String::new()
            };
            let done = done_tx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("client {client}"))
                .spawn(move || {
                    // The connection (and its TLS handshake) before any timed request.
                    let _ = agent
                        .get(format!("{base}/healthz"))
                        .call()
                        .and_then(|r| r.into_body().read_to_string());
                    let mut run = 0u64;
                    for count in rx {
                        let mut times = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
                        let mut failed = None;
                        for _ in 0..count {
                            run += 1;
                            let url = format!("{base}/complete?job={job}&run={run}{generation}");
                            let start = Instant::now();
                            match post(&agent, &url) {
                                Ok((200, _)) => times.push(start.elapsed()),
                                Ok((status, body)) => {
                                    failed = Some(format!("{url}: {status} {body}"));
                                    break;
                                }
                                Err(e) => {
                                    failed = Some(e);
                                    break;
                                }
                            }
                        }
                        let _ = done.send(failed.map_or(Ok(times), Err));
                    }
                })
                .expect("a client thread");
            work.push(tx);
            threads.push(thread);
        }
        let store_pid = (!store.wrapped).then(|| store.child.id());
        Clients {
            work,
            done,
            threads,
            latencies: Vec::new(),
            what: what.to_owned(),
            store_pid,
            cpu_at_start: (
                store_pid.map_or(Duration::ZERO, |p| cpu_time(&p.to_string())),
                cpu_time("self"),
                Instant::now(),
            ),
        }
    }

    /// `iters` completions split across the clients: the wall time from handing out the
    /// work to the last answer.
    fn run(&mut self, iters: u64) -> Duration {
        let n = self.work.len() as u64;
        let start = Instant::now();
        for (i, work) in self.work.iter().enumerate() {
            let share = iters / n + u64::from((i as u64) < iters % n);
            work.send(share).expect("a client thread");
        }
        for _ in 0..n {
            match self.done.recv().expect("a client thread") {
                Ok(times) => self.latencies.extend(times),
                Err(failure) => panic!("{}: a completion was not accepted: {failure}", self.what),
            }
        }
        start.elapsed()
    }

    /// Stops the threads and prints the latencies of every request they sent.
    fn finish(mut self) {
        self.work.clear();
        for thread in self.threads.drain(..) {
            thread.join().expect("a client thread");
        }
        let (store_cpu, clients_cpu, since) = self.cpu_at_start;
        let store_cpu = self
            .store_pid
            .map(|p| cpu_time(&p.to_string()).saturating_sub(store_cpu));
        let clients_cpu = cpu_time("self").saturating_sub(clients_cpu);
        let wall = since.elapsed();
        let mut l = std::mem::take(&mut self.latencies);
        if l.is_empty() {
            return;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / l.len() as f64;
        if let Some(store_cpu) = store_cpu {
            eprintln!(
                "store_load: {}: CPU per completion: store {:.0} us, clients {:.0} us \
                 ({:.2} cores busy on average)",
                self.what,
                per(store_cpu),
                per(clients_cpu),
                (store_cpu + clients_cpu).as_secs_f64() / wall.as_secs_f64()
            );
        }
        l.sort_unstable();
        let pick = |q: f64| l[((l.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        eprintln!(
            "store_load: {}: {} completions, latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} \
             ms, max {:.2} ms",
            self.what,
            l.len(),
            pick(0.5),
            pick(0.99),
            pick(0.999),
            pick(1.0)
        );
    }
}

fn store_https(c: &mut Criterion, root: &Path, certs: &Path) {
    settle_disk();
    let fenced = Store::start(certs, &root.join("fenced"), false, &[]);
    let unfenced = Store::start(certs, &root.join("unfenced"), true, &[]);
    let mut group = c.benchmark_group("store_https/complete");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for (store, kind, clients) in [
        (&fenced, "fenced", 1),
        (&fenced, "fenced", 8),
        (&fenced, "fenced", 64),
        (&unfenced, "unfenced", 64),
    ] {
        let what = format!("{kind}/{clients}");
        let prefix = format!("{}{clients}", &kind[..1]);
        let mut pool = Clients::new(certs, store, clients, &prefix, &what);
        group.bench_function(BenchmarkId::new(kind, clients), |b| {
            b.iter_custom(|iters| pool.run(iters))
        });
        pool.finish();
    }
    group.finish();
    fenced.stop();
    unfenced.stop();
}

/// A SQLite database as the store's ledger keeps it: exclusive locking, WAL,
/// `synchronous=FULL`, the same table, index and bookkeeping row.
fn sqlite_ledger(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open SQLite");
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .unwrap();
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .unwrap();
    assert!(mode.eq_ignore_ascii_case("wal"), "{mode}");
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute_batch(
        "CREATE TABLE completions (
            seq INTEGER PRIMARY KEY,
            job TEXT NOT NULL,
            run INTEGER NOT NULL,
            holder INTEGER NOT NULL,
            generation INTEGER,
            outcome TEXT NOT NULL CHECK (outcome IN ('accepted', 'unfenced')),
            at_ms INTEGER NOT NULL
        ) STRICT;
        CREATE INDEX completions_by_run ON completions (job, run);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT, WITHOUT ROWID;",
    )
    .unwrap();
    conn
}

/// One completion as the ledger stages it: is the run done, the row, and (once per
/// transaction, in [`commit`]) the last seq.
fn stage(conn: &Connection, seq: u64, job: &str, run: u64) {
    let landed: u32 = conn
        .prepare_cached("SELECT count(*) FROM completions WHERE job = ?1 AND run = ?2")
        .unwrap()
        .query_row(params![job, run as i64], |r| r.get(0))
        .unwrap();
    std::hint::black_box(landed);
    conn.prepare_cached(
        "INSERT INTO completions (seq, job, run, holder, generation, outcome, at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .unwrap()
    .execute(params![
        seq as i64,
        job,
        run as i64,
        1i64,
        GENERATION as i64,
        "accepted",
        1_700_000_000_000i64
    ])
    .unwrap();
}

fn commit(conn: &Connection, seq: u64) {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('last_seq', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .unwrap()
    .execute([seq as i64])
    .unwrap();
    conn.execute_batch("COMMIT").unwrap();
}

fn sqlite_alone(c: &mut Criterion, root: &Path) {
    settle_disk();
    let mut group = c.benchmark_group("sqlite_alone");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for (name, per_txn) in [("txn_per_row", 1u64), ("batch_64", 64)] {
        let conn = sqlite_ledger(&root.join(format!("{name}.sqlite")));
        let mut seq = 0u64;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let rows = left.min(per_txn);
                    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
                    for _ in 0..rows {
                        seq += 1;
                        stage(&conn, seq, "sqlite", seq);
                    }
                    commit(&conn, seq);
                    left -= rows;
                }
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// The store's fdatasync and fsync calls per completion at `clients` clients: a store under
/// `strace -f -c` takes `count` completions; a second one takes none, and its calls (start,
/// the first `/begin`, the clean stop) are subtracted.
fn fsyncs_per_completion(root: &Path, certs: &Path, clients: usize, count: u64) -> Option<()> {
    let traced = |name: &str, count: u64| -> Option<Vec<(String, u64, f64)>> {
        let data = root.join(name);
        let out = root.join(format!("{name}.strace"));
        let wrapper: Vec<String> = [
            "strace",
            "-f",
            "-c",
            "-w",
            "--seccomp-bpf",
            "-e",
            "trace=fdatasync,fsync",
            "-o",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_string_lossy().into_owned()])
        .collect();
        let store = Store::start(certs, &data, false, &wrapper);
        let mut pool = Clients::new(certs, &store, clients, "s", &format!("strace/{clients}"));
        if count > 0 {
            let took = pool.run(count);
            eprintln!(
                "store_load: under strace, {clients} client(s): {:.0} completions/s",
                count as f64 / took.as_secs_f64()
            );
        }
        drop(pool);
        store.stop();
        let summary = std::fs::read_to_string(&out).ok()?;
        // "% time  seconds  usecs/call  calls  [errors]  syscall"
        Some(
            summary
                .lines()
                .filter_map(|line| {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    let name = *words.last()?;
                    if name != "fdatasync" && name != "fsync" {
                        return None;
                    }
                    Some((
                        name.to_owned(),
                        words.get(3)?.parse().ok()?,
                        words.get(2)?.parse().ok()?,
                    ))
                })
                .collect(),
        )
    };
    let base = traced(&format!("strace-base-{clients}"), 0)?;
    let busy = traced(&format!("strace-{clients}"), count)?;
    let calls = |table: &[(String, u64, f64)], name: &str| {
        table
            .iter()
            .find(|(n, ..)| n == name)
            .map_or((0, 0.0), |(_, c, us)| (*c, *us))
    };
    let mut said = Vec::new();
    for name in ["fdatasync", "fsync"] {
        let (busy_calls, us) = calls(&busy, name);
        let (base_calls, _) = calls(&base, name);
        let extra = busy_calls.saturating_sub(base_calls);
        said.push(format!(
            "{:.3} {name} ({extra} calls, {us:.0} us/call)",
            extra as f64 / count as f64
        ));
    }
    eprintln!(
        "store_load: fsyncs per completion at {clients} client(s), {count} completions: {} \
         (start and stop subtracted: {base:?})",
        said.join(", ")
    );
    Some(())
}

fn fsync_counts(root: &Path, certs: &Path) {
    if std::env::var("FENCEKIT_BENCH_STRACE").is_ok_and(|v| v == "0") {
        return;
    }
    let has_strace = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_strace {
        eprintln!("store_load: no strace: fsyncs per completion not counted");
        return;
    }
    settle_disk();
    for (clients, count) in [(1, 2_000), (64, 12_800)] {
        if fsyncs_per_completion(root, certs, clients, count).is_none() {
            eprintln!("store_load: strace gave no summary: fsyncs per completion not counted");
            return;
        }
    }
}

fn benches(c: &mut Criterion) {
    let root = bench_dir();
    let certs = make_certs(root.path());
    // `cargo bench -- --test` runs each bench once; the count is for real runs.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        fsync_counts(root.path(), &certs);
    }
    store_https(c, root.path(), &certs);
    sqlite_alone(c, root.path());
}

criterion_group!(store_load, benches);

fn main() {
    store_load();
    Criterion::default().configure_from_args().final_summary();
}
