//! `fencekit fence show` and `fencekit fence rebase` on a fence a service left, as an operator
//! runs them: the re-created etcd cluster let back in, and every careless call refused.

#![allow(
    clippy::unwrap_used,
    reason = "a test that meets an error should stop right there"
)]

mod common;

use common::{assert_one_line_error, fencekit, text};
use fencekit::{Fence, FenceOptions, Source, Token, Verdict};

const OLD: &str = "etcd:000000000000000a";
const NEW: &str = "etcd:000000000000000b";

/// A fence whose resource "scheduler" took etcd cluster a's revision 1,000,000.
fn fence_of_old_cluster(dir: &std::path::Path) {
    let fence = Fence::open(dir, FenceOptions::default()).unwrap();
    let old = fence.source_id(&Source::parse(OLD).unwrap()).unwrap();
    let id = fence.register(b"scheduler").unwrap();
    let token = Token::from_etcd(1_000_000, 0x694d_8f0a_2c11_e703).unwrap();
    assert!(fence.check_from(id, old, token).unwrap().is_accepted());
}

#[test]
fn an_operator_lets_a_re_created_cluster_in_and_its_predecessor_stays_out() {
    let dir = tempfile::tempdir().unwrap();
    let fence_dir = dir.path().to_str().unwrap();
    fence_of_old_cluster(dir.path());

    let out = fencekit(&["fence", "show", fence_dir]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("\"scheduler\"") && said.contains(OLD),
        "{said}"
    );
    assert!(said.contains("generation 1000000"), "{said}");

    let out = fencekit(&[
        "fence",
        "rebase",
        fence_dir,
        "--key",
        "scheduler",
        "--to",
        NEW,
        "--by",
        "alice CHG-7",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains(&format!("from {OLD} to {NEW}")), "{said}");

    let out = fencekit(&["fence", "show", fence_dir]);
    let said = text(&out);
    assert!(
        said.contains(NEW) && said.contains("\"alice CHG-7\""),
        "{said}"
    );
    assert!(said.contains("(none)"), "the mark is cleared: {said}");

    let fence = Fence::open(dir.path(), FenceOptions::default()).unwrap();
    let id = fence.lookup(b"scheduler").unwrap();
    let new = fence.source_id(&Source::parse(NEW).unwrap()).unwrap();
    let old = fence.source_id(&Source::parse(OLD).unwrap()).unwrap();
    let leader = Token::from_etcd(5, 77).unwrap();
    assert!(fence.check_from(id, new, leader).unwrap().is_accepted());
    let zombie = Token::from_etcd(2_000_000, 0x694d_8f0a_2c11_e703).unwrap();
    assert!(matches!(
        fence.check_from(id, old, zombie).unwrap(),
        Verdict::ForeignSource { .. }
    ));
    drop(fence);

    // Rolled back to the old cluster: its last mark comes back, its older tokens stay out.
    let out = fencekit(&[
        "fence",
        "rebase",
        fence_dir,
        "--key",
        "scheduler",
        "--to",
        OLD,
        "--by",
        "bob, rollback",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("generation 1000000") && said.contains("is back"),
        "{said}"
    );
    // A resource new to the fence, bound before its first token.
    let out = fencekit(&[
        "fence",
        "rebase",
        fence_dir,
        "--key",
        "orders",
        "--to",
        NEW,
        "--by",
        "deploy",
        "--new-resource",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("registered \"orders\""),
        "{}",
        text(&out)
    );
}

#[test]
fn careless_rebases_are_refused_with_one_line_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fence_dir = dir.path().to_str().unwrap();
    fence_of_old_cluster(dir.path());
    let rebase = |to: &str, by: &str| {
        fencekit(&[
            "fence",
            "rebase",
            fence_dir,
            "--key",
            "scheduler",
            "--to",
            to,
            "--by",
            by,
        ])
    };
    assert_one_line_error(&rebase(OLD, "bob"), "could not tell");
    assert_one_line_error(&rebase("etcd", "bob"), "<kind>:<identity>");
    assert_one_line_error(&rebase(NEW, ""), "say who rebases");
    assert_one_line_error(&rebase(NEW, "bob\u{1b}[2K"), "control characters");
    assert_one_line_error(
        &fencekit(&[
            "fence",
            "rebase",
            "/nonexistent",
            "--key",
            "k",
            "--to",
            NEW,
            "--by",
            "b",
        ]),
        "is not a directory",
    );
    assert_one_line_error(
        &fencekit(&[
            "fence",
            "rebase",
            fence_dir,
            "--key-hex",
            "0x1",
            "--to",
            NEW,
            "--by",
            "b",
        ]),
        "hexadecimal",
    );
    assert_one_line_error(
        &fencekit(&[
            "fence",
            "rebase",
            fence_dir,
            "--key-hex",
            "zz",
            "--to",
            NEW,
            "--by",
            "b",
        ]),
        "not hexadecimal digits",
    );
    // A mistyped key is refused, not registered as a new resource.
    let out = fencekit(&[
        "fence", "rebase", fence_dir, "--key", "schedulr", "--to", NEW, "--by", "b",
    ]);
    assert_one_line_error(&out, "--new-resource");
    // An empty or wrong directory holds no log: nothing is made there.
    let empty = tempfile::tempdir().unwrap();
    for command in ["show", "rebase"] {
        let mut args = vec!["fence", command, empty.path().to_str().unwrap()];
        if command == "rebase" {
            args.extend(["--key", "k", "--to", NEW, "--by", "b", "--new-resource"]);
        }
        assert_one_line_error(&fencekit(&args), "holds no fence log");
    }
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    // While a service holds the fence, the command says what to do instead.
    {
        let _open = Fence::open(dir.path(), FenceOptions::default()).unwrap();
        assert_one_line_error(&rebase(NEW, "bob"), "stop the service");
    }
    let fence = Fence::open(dir.path(), FenceOptions::default()).unwrap();
    let id = fence.lookup(b"scheduler").unwrap();
    assert_eq!(
        fence.bound_source(id).unwrap(),
        Some(Source::parse(OLD).unwrap())
    );
    assert_eq!(fence.last_rebase(id).unwrap(), None);
    assert_eq!(fence.mark(id).unwrap().unwrap().generation.get(), 1_000_000);
}

#[test]
fn a_stores_fence_is_never_rebased() {
    let dir = tempfile::tempdir().unwrap();
    let store_fence = dir.path().join("fence");
    drop(
        Fence::open(
            &store_fence,
            FenceOptions {
                owner: fencekit::wal::LogOwner::Store,
                ..FenceOptions::default()
            },
        )
        .unwrap(),
    );
    let out = fencekit(&[
        "fence",
        "rebase",
        store_fence.to_str().unwrap(),
        "--key",
        "jobs",
        "--to",
        NEW,
        "--by",
        "bob",
    ]);
    assert_one_line_error(&out, "never rebased");
}
