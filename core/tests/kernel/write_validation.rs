//! `Fence::check_write`: the fence decides on the token first; the validator only ever sees
//! writes whose token the fence accepted, and anything but its clear acceptance rejects.

use std::sync::Arc;
use std::sync::Mutex;

use fencekit::{
    Fence, FenceOptions, Rejection, Token, Validation, Verdict, WriteValidator, WriteVerdict,
};

/// Accepts payloads of at most `max` bytes and records what it was asked.
struct MaxPayload {
    max: usize,
    seen: Mutex<Vec<(Token, Option<Token>, usize)>>,
}

impl WriteValidator for MaxPayload {
    fn validate(
        &self,
        key: &[u8],
        token: Token,
        mark: Option<Token>,
        payload: &[u8],
    ) -> Validation {
        assert_eq!(key, b"ledger");
        self.seen.lock().unwrap().push((token, mark, payload.len()));
        if payload.len() <= self.max {
            Validation::Accept
        } else {
            Validation::Reject(Rejection {
                code: 7,
                reason: format!("{} bytes; at most {}", payload.len(), self.max),
            })
        }
    }
}

struct Panics;

impl WriteValidator for Panics {
    fn validate(&self, _: &[u8], _: Token, _: Option<Token>, _: &[u8]) -> Validation {
        panic!("a bug in the validator")
    }
}

fn token(generation: u64, holder: u64) -> Token {
    Token::from_parts(generation, holder).unwrap()
}

#[test]
fn the_validator_sees_only_writes_the_fence_accepted_and_its_refusal_rejects() {
    let dir = tempfile::tempdir().unwrap();
    let fence = Fence::open(dir.path(), FenceOptions::default()).unwrap();
    let id = fence.register(b"ledger").unwrap();
    assert_eq!(
        fence.check_write(id, token(1, 1), b"anything").unwrap(),
        WriteVerdict::Accepted(Verdict::Advanced { previous: None }),
        "no validator: the fence alone decides"
    );

    let validator = Arc::new(MaxPayload {
        max: 4,
        seen: Mutex::new(Vec::new()),
    });
    assert!(fence.set_validator(Some(validator.clone())).is_none());
    assert!(
        fence
            .check_write(id, token(1, 1), b"ok")
            .unwrap()
            .is_accepted()
    );
    match fence.check_write(id, token(2, 2), b"too long").unwrap() {
        WriteVerdict::Invalid { verdict, rejection } => {
            assert_eq!(
                verdict,
                Verdict::Advanced {
                    previous: Some(token(1, 1))
                }
            );
            assert_eq!(rejection.code, 7);
        }
        other => panic!("expected a rejected payload, got {other:?}"),
    }
    // The advance stands: the newer token fences the older one whatever its payload was.
    assert_eq!(
        fence.check_write(id, token(1, 1), b"ok").unwrap(),
        WriteVerdict::Fenced(Verdict::Stale {
            current: token(2, 2)
        })
    );
    assert_eq!(
        fence.check_write(id, token(2, 3), b"ok").unwrap(),
        WriteVerdict::Fenced(Verdict::Conflict {
            current: token(2, 2)
        })
    );
    let seen = validator.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (token(1, 1), Some(token(1, 1)), 2),
            (token(2, 2), Some(token(1, 1)), 8)
        ],
        "the validator saw only accepted tokens, with the mark before each check"
    );

    fence.set_validator(Some(Arc::new(Panics)));
    match fence.check_write(id, token(2, 2), b"ok").unwrap() {
        WriteVerdict::Invalid { rejection, .. } => assert_eq!(rejection.code, Rejection::FAILED),
        other => panic!("a panicking validator must reject, got {other:?}"),
    }
    assert!(fence.set_validator(None).is_some());
    assert!(
        fence
            .check_write(id, token(2, 2), b"ok")
            .unwrap()
            .is_accepted()
    );
}
