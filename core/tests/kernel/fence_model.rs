//! I5 against a model: the fence must answer exactly as a map of maxima per source does,
//! across random reopens, compactions and rebases.

use std::collections::HashMap;

use fencekit::{Fence, FenceFault, Source, Token, Verdict};
use proptest::prelude::*;

use crate::support::small_fence;

#[derive(Debug, Clone)]
enum Op {
    Check {
        key: u8,
        source: usize,
        generation: u64,
        holder: u64,
    },
    Batch(Vec<(u8, u64, u64)>),
    Rebase {
        key: u8,
        source: usize,
    },
    Reopen,
    Compact,
}

/// The unnamed source (what `check` presents) and two named ones.
fn sources() -> [Source; 3] {
    [
        Source::UNNAMED,
        Source::etcd_cluster(1),
        Source::zookeeper_ensemble("zk").unwrap(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Small holder ids fit the packed mark word; ids from 2^40 on take the wide form.
    let holder = prop_oneof![1u64..4, (1u64 << 40)..(1u64 << 40) + 3];
    let check = (0u8..6, 1u64..12, holder);
    prop_oneof![
        8 => (check.clone(), 0usize..3).prop_map(|((key, generation, holder), source)| Op::Check { key, source, generation, holder }),
        2 => proptest::collection::vec(check, 1..8).prop_map(Op::Batch),
        1 => (0u8..6, 0usize..3).prop_map(|(key, source)| Op::Rebase { key, source }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
    ]
}

/// One resource as the model knows it: the source it is bound to, its mark, and the mark each
/// former source had when the resource was last moved away from it.
#[derive(Debug, Clone, Default)]
struct Modelled {
    bound: Option<usize>,
    mark: Option<Token>,
    former: HashMap<usize, Option<Token>>,
}

/// A verdict with its source named, comparable across reopens (source ids are not).
#[derive(Debug, PartialEq)]
enum Answer {
    Verdict(Verdict),
    Foreign(Source),
}

fn answer(fence: &Fence, verdict: Verdict) -> Answer {
    match verdict {
        Verdict::ForeignSource { bound } => Answer::Foreign(fence.source(bound).unwrap()),
        other => Answer::Verdict(other),
    }
}

/// What the fence must answer, by DESIGN.md I5 with the default tie-breaker.
fn model_check(
    state: &mut HashMap<Vec<u8>, Modelled>,
    key: &[u8],
    source: usize,
    token: Token,
) -> Answer {
    let resource = state.entry(key.to_vec()).or_default();
    if let Some(bound) = resource.bound
        && bound != source
    {
        return Answer::Foreign(sources()[bound].clone());
    }
    let verdict = match resource.mark {
        None => {
            resource.mark = Some(token);
            Verdict::Advanced { previous: None }
        }
        Some(current) if token.generation > current.generation => {
            resource.mark = Some(token);
            Verdict::Advanced {
                previous: Some(current),
            }
        }
        Some(current) if token.generation < current.generation => Verdict::Stale { current },
        Some(current) if token == current => Verdict::Accepted,
        Some(current) => Verdict::Conflict { current },
    };
    if verdict.is_accepted() {
        resource.bound = Some(source);
    }
    Answer::Verdict(verdict)
}

fn key_of(k: u8) -> Vec<u8> {
    format!("resource/{k}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_fence_answers_as_a_map_of_maxima(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut fence = Fence::open(dir.path(), small_fence()).unwrap();
        let mut state: HashMap<Vec<u8>, Modelled> = HashMap::new();
        for op in ops {
            match op {
                Op::Check { key, source, generation, holder } => {
                    let token = Token::from_parts(generation, holder).unwrap();
                    let expected = model_check(&mut state, &key_of(key), source, token);
                    let id = fence.source_id(&sources()[source]).unwrap();
                    let verdict = fence.check_key_from(&key_of(key), id, token).unwrap();
                    prop_assert_eq!(answer(&fence, verdict), expected);
                }
                Op::Batch(items) => {
                    let mut ids = Vec::new();
                    let mut expected = Vec::new();
                    for &(key, generation, holder) in &items {
                        let token = Token::from_parts(generation, holder).unwrap();
                        ids.push((fence.register(&key_of(key)).unwrap(), token));
                        expected.push(model_check(&mut state, &key_of(key), 0, token));
                    }
                    let mut out = vec![Verdict::Accepted; ids.len()];
                    fence.check_batch(&ids, &mut out).unwrap();
                    let out: Vec<Answer> = out.into_iter().map(|v| answer(&fence, v)).collect();
                    prop_assert_eq!(out, expected);
                }
                Op::Rebase { key, source } => {
                    let resource = state.entry(key_of(key)).or_default();
                    let result = fence.rebase(&key_of(key), &sources()[source], "model");
                    if resource.bound == Some(source) {
                        prop_assert!(
                            matches!(&result, Err(e) if matches!(e.fault(), FenceFault::RebaseRefused(_))),
                            "{result:?}"
                        );
                    } else {
                        let rebase = result.unwrap();
                        prop_assert_eq!(rebase.cleared_mark, resource.mark);
                        prop_assert_eq!(rebase.from, resource.bound.map(|b| sources()[b].clone()));
                        // Back to a former source: its last mark, so its old tokens stay stale.
                        let restored = resource.former.get(&source).copied().flatten();
                        prop_assert_eq!(rebase.restored_mark, restored);
                        if let Some(from) = resource.bound {
                            resource.former.insert(from, resource.mark);
                        }
                        resource.bound = Some(source);
                        resource.mark = restored;
                    }
                }
                Op::Reopen => {
                    drop(fence);
                    fence = Fence::open(dir.path(), small_fence()).unwrap_or_else(|e| panic!("reopen: {e:?}"));
                }
                Op::Compact => fence.compact().unwrap(),
            }
            // The durable state is the model's, whatever happened.
            for (key, resource) in &state {
                let Some(id) = fence.lookup(key) else {
                    prop_assert!(resource.bound.is_none(), "a bound key is known after reopen");
                    continue;
                };
                prop_assert_eq!(fence.mark(id).unwrap(), resource.mark);
                prop_assert_eq!(fence.bound_source(id).unwrap(), resource.bound.map(|b| sources()[b].clone()));
            }
        }
    }
}

#[test]
fn counters_count_each_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    let id = fence.register(b"k").unwrap();
    let t = |g, h| Token::from_parts(g, h).unwrap();
    fence.check(id, t(2, 1)).unwrap(); // advanced
    fence.check(id, t(2, 1)).unwrap(); // accepted
    fence.check(id, t(2, 1)).unwrap(); // accepted
    fence.check(id, t(1, 1)).unwrap(); // stale
    fence.check(id, t(2, 9)).unwrap(); // conflict
    fence.check(id, t(3, 9)).unwrap(); // advanced
    let c = fence.counters(id).unwrap();
    assert_eq!((c.accepted, c.advanced, c.stale, c.conflicts), (2, 2, 1, 1));
}

#[test]
fn automatic_compaction_keeps_every_mark() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = HashMap::new();
    {
        let fence = Fence::open(dir.path(), small_fence()).unwrap();
        for generation in 1..=400u64 {
            for key in 0..8u8 {
                let token = Token::from_parts(generation, 1 + u64::from(key)).unwrap();
                assert!(fence.check_key(&key_of(key), token).unwrap().is_accepted());
                last.insert(key, token);
            }
        }
    }
    let segments = crate::support::segments(dir.path()).len();
    assert!(segments <= 2, "the log was compacted ({segments} segments)");
    let fence = Fence::open(dir.path(), small_fence()).unwrap();
    for (key, token) in last {
        let id = fence.lookup(&key_of(key)).unwrap();
        assert_eq!(fence.mark(id).unwrap(), Some(token));
    }
}
