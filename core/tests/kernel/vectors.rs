//! The conformance vectors of `tests/vectors/` run against the Rust API. Every binding runs the
//! same files; see tests/vectors/README.md for the format.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fencekit::fence::validate_key;
use fencekit::{
    Counters, ErrorKind, Fence, FenceError, FenceFault, FenceOptions, ResourceId, Token, Verdict,
};
use serde_json::Value;

/// What a step answered.
#[derive(Debug)]
enum Outcome {
    Ok,
    /// The status's name and the error's message.
    Error(&'static str, String),
    Verdict(Verdict, Token),
    Verdicts(Vec<Verdict>),
    Mark(Option<Token>),
    Counters(Counters),
}

fn status_name(error: &FenceError) -> &'static str {
    match error.kind() {
        ErrorKind::InvalidToken => "invalid_token",
        ErrorKind::InvalidKey => "invalid_key",
        ErrorKind::UnknownResource => "unknown_resource",
        ErrorKind::InvalidBatch => "invalid_batch",
        _ => panic!("a vector met an unexpected error: {error}"),
    }
}

fn number(value: &Value) -> u64 {
    match value {
        Value::Number(n) => n.as_u64().expect("a non-negative integer"),
        Value::String(s) => s.parse().expect("a decimal string"),
        other => panic!("not a number: {other}"),
    }
}

fn pair(value: &Value) -> (u64, u64) {
    let items = value.as_array().expect("[generation, holder]");
    (number(&items[0]), number(&items[1]))
}

fn token(value: &Value) -> Result<Token, FenceError> {
    let (generation, holder) = pair(value);
    Token::from_parts(generation, holder)
}

fn key(step: &Value) -> Vec<u8> {
    match (step.get("key"), step.get("key_len")) {
        (Some(key), _) => key.as_str().expect("a string key").as_bytes().to_vec(),
        (None, Some(len)) => vec![b'k'; number(len) as usize],
        (None, None) => panic!("the step names no key"),
    }
}

fn kind(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Accepted => "accepted",
        Verdict::Advanced { .. } => "advanced",
        Verdict::Stale { .. } => "stale",
        Verdict::Conflict { .. } => "conflict",
        Verdict::ForeignSource { .. } => "foreign-source",
    }
}

fn optional_token(value: &Value) -> Option<(u64, u64)> {
    (!value.is_null()).then(|| pair(value))
}

fn parts(token: Option<Token>) -> Option<(u64, u64)> {
    token.map(|t| (t.generation.get(), t.holder.get()))
}

/// Checks `outcome` against the step's `expect`.
fn compare(context: &str, outcome: &Outcome, expect: &Value) {
    if let Some(status) = expect.get("status") {
        let got = match outcome {
            Outcome::Error(name, _) => name,
            _ => "ok",
        };
        assert_eq!(
            got,
            status.as_str().expect("a status name"),
            "{context}: {outcome:?}"
        );
        if let (Some(parts), Outcome::Error(_, message)) = (expect.get("message"), outcome) {
            for part in parts.as_array().expect("a list of strings") {
                let part = part.as_str().expect("a string");
                assert!(
                    message.contains(part),
                    "{context}: the message {message:?} does not name {part:?}"
                );
            }
        }
        return;
    }
    if let Some(want) = expect.get("verdict") {
        let Outcome::Verdict(verdict, token) = outcome else {
            panic!("{context}: expected a verdict, got {outcome:?}");
        };
        assert_eq!(
            kind(verdict),
            want.as_str().expect("a verdict name"),
            "{context}"
        );
        let (current, previous) = match *verdict {
            Verdict::Accepted => (Some(*token), None),
            Verdict::Advanced { previous } => (Some(*token), previous),
            Verdict::Stale { current } | Verdict::Conflict { current } => (Some(current), None),
            Verdict::ForeignSource { .. } => (None, None),
        };
        if let Some(want) = expect.get("current") {
            assert_eq!(parts(current), optional_token(want), "{context}: current");
        }
        if let Some(want) = expect.get("previous") {
            assert_eq!(parts(previous), optional_token(want), "{context}: previous");
        }
        return;
    }
    if let Some(want) = expect.get("verdicts") {
        let Outcome::Verdicts(verdicts) = outcome else {
            panic!("{context}: expected verdicts, got {outcome:?}");
        };
        let got: Vec<&str> = verdicts.iter().map(kind).collect();
        let want: Vec<&str> = want
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v.as_str().expect("a verdict name"))
            .collect();
        assert_eq!(got, want, "{context}");
        return;
    }
    if let Some(want) = expect.get("mark") {
        let Outcome::Mark(mark) = outcome else {
            panic!("{context}: expected a mark, got {outcome:?}");
        };
        assert_eq!(parts(*mark), optional_token(want), "{context}");
        return;
    }
    if let Some(want) = expect.get("counters") {
        let Outcome::Counters(c) = outcome else {
            panic!("{context}: expected counters, got {outcome:?}");
        };
        let got = [c.accepted, c.advanced, c.stale, c.conflicts];
        let want = ["accepted", "advanced", "stale", "conflicts"].map(|f| number(&want[f]));
        assert_eq!(got, want, "{context}: accepted, advanced, stale, conflicts");
        return;
    }
    panic!("{context}: an expectation of no known kind: {expect}");
}

fn run(path: &Path) {
    let vector: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let name = vector["name"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut fence = Fence::open(dir.path(), FenceOptions::default()).unwrap();
    let mut ids: HashMap<Vec<u8>, ResourceId> = HashMap::new();
    for (index, step) in vector["steps"].as_array().unwrap().iter().enumerate() {
        let op = step["op"].as_str().unwrap();
        let context = format!("{name} step {index} ({op})");
        let id_of = |ids: &HashMap<Vec<u8>, ResourceId>| {
            *ids.get(&key(step))
                .unwrap_or_else(|| panic!("{context}: the key was not registered"))
        };
        let result: Result<Outcome, FenceError> = match op {
            "register" => fence.register(&key(step)).map(|id| {
                ids.insert(key(step), id);
                Outcome::Ok
            }),
            // The C ABI's fk_fence_lookup: a key no fence can hold is invalid, a valid one that
            // is not registered unknown.
            "lookup" => validate_key(&key(step)).and_then(|()| {
                fence
                    .lookup(&key(step))
                    .map(|_| Outcome::Ok)
                    .ok_or_else(|| FenceFault::UnknownResource(u32::MAX).into())
            }),
            "check" => token(&step["token"])
                .and_then(|t| fence.check(id_of(&ids), t).map(|v| Outcome::Verdict(v, t))),
            "check_id" => token(&step["token"]).and_then(|t| {
                let id = ResourceId::from_u32(number(&step["id"]) as u32);
                fence.check(id, t).map(|v| Outcome::Verdict(v, t))
            }),
            "check_key" => token(&step["token"]).and_then(|t| {
                let verdict = fence.check_key(&key(step), t)?;
                ids.insert(key(step), fence.lookup(&key(step)).unwrap());
                Ok(Outcome::Verdict(verdict, t))
            }),
            "batch" => {
                // The raw items, each validated by the fence itself (as across the C ABI), so
                // that its error names the item.
                let items: Vec<(ResourceId, u64, u64)> = step["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|item| {
                        let (generation, holder) = pair(&item["token"]);
                        (id_of_item(&ids, item, &context), generation, holder)
                    })
                    .collect();
                let mut out = vec![Verdict::Accepted; items.len()];
                fence
                    .check_batch_by(
                        items.len(),
                        |i| Ok((items[i].0, Token::from_parts(items[i].1, items[i].2)?)),
                        |i, _, verdict| out[i] = verdict,
                    )
                    .map(|()| Outcome::Verdicts(out))
            }
            "mark" => fence.mark(id_of(&ids)).map(Outcome::Mark),
            "counters" => fence.counters(id_of(&ids)).map(Outcome::Counters),
            "reopen" => {
                drop(fence);
                fence = Fence::open(dir.path(), FenceOptions::default()).unwrap();
                ids = ids
                    .into_keys()
                    .filter_map(|k| fence.lookup(&k).map(|id| (k, id)))
                    .collect();
                Ok(Outcome::Ok)
            }
            other => panic!("{context}: unknown op {other}"),
        };
        let outcome = result.unwrap_or_else(|e| Outcome::Error(status_name(&e), e.to_string()));
        if let Some(expect) = step.get("expect") {
            compare(&context, &outcome, expect);
        }
    }
}

fn id_of_item(ids: &HashMap<Vec<u8>, ResourceId>, item: &Value, context: &str) -> ResourceId {
    if let Some(id) = item.get("id") {
        return ResourceId::from_u32(number(id) as u32);
    }
    *ids.get(&key(item))
        .unwrap_or_else(|| panic!("{context}: a batch item's key was not registered"))
}

fn vector_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_conformance_vector_passes() {
    let files = vector_files();
    assert!(files.len() >= 5, "found only {files:?}");
    for file in files {
        run(&file);
    }
}

#[test]
fn the_runner_catches_a_wrong_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("planted.json");
    std::fs::write(
        &planted,
        r#"{"name": "planted", "steps": [
            {"op": "check_key", "key": "k", "token": [2, 1], "expect": {"verdict": "advanced"}},
            {"op": "check_key", "key": "k", "token": [1, 1], "expect": {"verdict": "accepted"}}]}"#,
    )
    .unwrap();
    let caught = std::panic::catch_unwind(|| run(&planted));
    assert!(
        caught.is_err(),
        "a stale token expected as accepted went unnoticed"
    );
}
