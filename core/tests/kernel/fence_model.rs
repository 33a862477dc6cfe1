//! I5 against a model: the fence must answer exactly as a map of maxima does, across random
//! reopens and compactions.

use std::collections::HashMap;

use fencekit::{Fence, Token, Verdict};
use proptest::prelude::*;

use crate::support::small_fence;

#[derive(Debug, Clone)]
enum Op {
    Check {
        key: u8,
        generation: u64,
        holder: u64,
    },
    Batch(Vec<(u8, u64, u64)>),
    Reopen,
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    // Small holder ids fit the packed mark word; ids from 2^40 on take the two-word form.
    let holder = prop_oneof![1u64..4, (1u64 << 40)..(1u64 << 40) + 3];
    let check = (0u8..6, 1u64..12, holder);
    prop_oneof![
        8 => check.clone().prop_map(|(key, generation, holder)| Op::Check { key, generation, holder }),
        2 => proptest::collection::vec(check, 1..8).prop_map(Op::Batch),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
    ]
}

/// What the fence must answer, by DESIGN.md I5 with the default tie-breaker.
fn model_check(marks: &mut HashMap<Vec<u8>, Token>, key: &[u8], token: Token) -> Verdict {
    match marks.get(key).copied() {
        None => {
            marks.insert(key.to_vec(), token);
            Verdict::Advanced { previous: None }
        }
        Some(current) if token.generation > current.generation => {
            marks.insert(key.to_vec(), token);
            Verdict::Advanced {
                previous: Some(current),
            }
        }
        Some(current) if token.generation < current.generation => Verdict::Stale { current },
        Some(current) if token == current => Verdict::Accepted,
        Some(current) => Verdict::Conflict { current },
    }
}

fn key_of(k: u8) -> Vec<u8> {
    format!("resource/{k}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_fence_answers_as_a_map_of_maxima(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut fence = Fence::open(dir.path(), small_fence()).unwrap();
        let mut marks: HashMap<Vec<u8>, Token> = HashMap::new();
        for op in ops {
            match op {
                Op::Check { key, generation, holder } => {
                    let token = Token::from_parts(generation, holder).unwrap();
                    let expected = model_check(&mut marks, &key_of(key), token);
                    prop_assert_eq!(fence.check_key(&key_of(key), token).unwrap(), expected);
                }
                Op::Batch(items) => {
                    let mut ids = Vec::new();
                    let mut expected = Vec::new();
                    for &(key, generation, holder) in &items {
                        let token = Token::from_parts(generation, holder).unwrap();
                        ids.push((fence.register(&key_of(key)).unwrap(), token));
                        expected.push(model_check(&mut marks, &key_of(key), token));
                    }
                    let mut out = vec![Verdict::Accepted; ids.len()];
                    fence.check_batch(&ids, &mut out).unwrap();
                    prop_assert_eq!(out, expected);
                }
                Op::Reopen => {
                    drop(fence);
                    fence = Fence::open(dir.path(), small_fence()).unwrap_or_else(|e| panic!("reopen: {e:?}"));
                }
                Op::Compact => fence.compact().unwrap(),
            }
            // The durable marks are the model's, whatever happened.
            for (key, token) in &marks {
                let id = fence.lookup(key).expect("a key with a mark is known after reopen");
                prop_assert_eq!(fence.mark(id).unwrap(), Some(*token));
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
