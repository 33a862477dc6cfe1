//! Token sources across the C ABI: tokens minted by etcd, ZooKeeper, a Kubernetes Lease or any
//! named coordinator, checked by a fence that remembers each resource's source.
//!
//! A source name is `<kind>:<identity>` (printable ASCII, no spaces, at most
//! `FK_SOURCE_NAME_MAX` bytes) or `unnamed`, the source of `fk_fence_check`'s tokens:
//! `etcd:<cluster id as 16 lowercase hex digits>`, `zookeeper:<ensemble name>`,
//! `k8s-lease:<namespace>/<name>/<metadata.uid>`, `fencekit:<cluster id>`, `named:<name>`.

use std::ffi::c_char;

use kernel::limits::SOURCE_NAME_MAX;
use kernel::{ResourceId, Source, SourceId, Token};

use crate::boundary::{
    Failure, Out, bytes, text, with_handle, with_handle_out, with_handle_out_or_reject,
    without_handle, without_handle_out,
};
use crate::buf::fk_buf;
use crate::fence::{answer, fk_fence};
use crate::status::*;
use crate::token::{fk_token, fk_verdict};

/// The longest source name, in bytes.
pub const FK_SOURCE_NAME_MAX: usize = 400;
const _: () = assert!(FK_SOURCE_NAME_MAX == SOURCE_NAME_MAX);

/// The source of tokens checked without naming one (`fk_fence_check`), in every fence.
pub const FK_SOURCE_UNNAMED: u32 = 0;
const _: () = assert!(FK_SOURCE_UNNAMED == SourceId::UNNAMED.as_u32());

/// # Safety
///
/// As for [`text`].
unsafe fn source_arg(name: *const c_char, len: usize, what: &str) -> Result<Source, Failure> {
    Source::validate_name_len(len)?;
    // SAFETY: forwarded from the caller.
    let name = unsafe { text(name, len, what) }?;
    Ok(Source::parse(name)?)
}

/// Checks that the `name_len` bytes at `name` name a token source as every fence takes it
/// (`<kind>:<identity>`, or `unnamed`): `FK_STATUS_OK`, or `FK_STATUS_INVALID_SOURCE` with a
/// message saying what is wrong (`FK_STATUS_INVALID_UTF8` for bytes that are not UTF-8).
/// Needs no fence: bindings check names with it up front.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `name` points to `name_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_source_validate(name: *const c_char, name_len: usize) -> fk_status {
    without_handle(|| {
        // SAFETY: `name_len` readable bytes (the caller's contract).
        unsafe { source_arg(name, name_len, "name") }.map(|_| ())
    })
}

/// Writes to `*out` this fence's id for the source named by the `name_len` bytes at `name`,
/// giving it one if it is new (at most 1024 per fence). Look it up once, not per check: ids
/// are valid with this fence until it is freed, not across reopening.
///
/// Fails with `FK_STATUS_INVALID_SOURCE` for a name that is not `<kind>:<identity>` (see the
/// header's list), `FK_STATUS_TOO_MANY_SOURCES` past the limit.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `name` points to `name_len` readable bytes; `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_source_id(
    fence: *const fk_fence,
    name: *const c_char,
    name_len: usize,
    out: *mut u32,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };
    with_handle_out(fence, "fence", out, "out", |f| {
        // SAFETY: `name_len` readable bytes (the caller's contract).
        let source = unsafe { source_arg(name, name_len, "name") }?;
        Ok(f.fence.source_id(&source)?.as_u32())
    })
}

/// Checks `token`, minted by the source `source` (from `fk_fence_source_id`), for `resource`,
/// as `fk_fence_check` does for the unnamed source. A resource takes tokens from the source
/// its first accepted token came from (or a rebase named): a token of any other source gets
/// `FK_VERDICT_FOREIGN_SOURCE`, whatever its numbers. A source id this fence never gave fails
/// with `FK_STATUS_INVALID_SOURCE`. On any failure `*out` is `FK_VERDICT_NONE`.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_check_from(
    fence: *const fk_fence,
    resource: u32,
    source: u32,
    token: fk_token,
    out: *mut fk_verdict,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };
    with_handle_out_or_reject(fence, "fence", out, "out", |f| {
        let token = token.to_kernel()?;
        let (resource, source) = (ResourceId::from_u32(resource), SourceId::from_u32(source));
        answer(f.fence.check_from(resource, source, token), token)
    })
}

/// Writes the name of the source `resource` takes tokens from to `*out` (release it with
/// `fk_buf_release`): `unnamed` for `fk_fence_check`'s tokens, and an empty buffer for a
/// resource that has taken no token and had no rebase.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_bound_source(
    fence: *const fk_fence,
    resource: u32,
    out: *mut fk_buf,
) -> fk_status {
    // SAFETY: `fence` is NULL or live; `out` is NULL or writable (the caller's contract).
    let (fence, out) = unsafe { (fence.as_ref(), Out::new(out)) };
    with_handle_out(fence, "fence", out, "out", |f| {
        let bound = f.fence.bound_source(ResourceId::from_u32(resource))?;
        let name = bound.map_or(Vec::new(), |s| s.as_str().as_bytes().to_vec());
        Ok(fk_buf::new(name))
    })
}

/// Moves the resource `key` (registering it if new) to the source named by `to`, durably,
/// recording `by` (who did it: a person or a change ticket, 1 to 256 bytes of UTF-8 without
/// control characters) and the time, and clears its mark: from then on a token of any other
/// source is refused as foreign, and the first token of `to` sets the mark whatever its
/// generation. A resource moved back to a source it took tokens from before gets that
/// source's last mark back instead (`fk_fence_mark` reads it), so its old tokens stay stale.
/// For a coordinator re-created from scratch (its numbering restarted) or a migration; never
/// done by fencekit itself. `*out_cleared` (if not NULL) receives the mark it cleared, all
/// zero for none. Refused between `unnamed` and `fencekit:<id>` (one group's terms, maybe,
/// under two names).
///
/// Fails with `FK_STATUS_REBASE_REFUSED`, writing nothing, when the resource already takes
/// tokens from `to` (a re-created coordinator is a new source: etcd's cluster id and a
/// Lease's uid change; give a ZooKeeper ensemble a new name) or `by` is not acceptable.
///
/// Thread safety: any thread, concurrently with any call but `fk_fence_free`.
///
/// # Safety
///
/// `fence` is NULL or live; `key`, `to` and `by` point to as many readable bytes as their
/// lengths say; `out_cleared` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_fence_rebase(
    fence: *const fk_fence,
    key: *const u8,
    key_len: usize,
    to: *const c_char,
    to_len: usize,
    by: *const c_char,
    by_len: usize,
    out_cleared: *mut fk_token,
) -> fk_status {
    // SAFETY: `fence` is NULL or live (the caller's contract).
    let fence = unsafe { fence.as_ref() };
    with_handle(fence, "fence", |f| {
        // The lengths first, so that a claimed length is refused before a byte is read.
        kernel::fence::validate_key_len(key_len)?;
        kernel::fence::validate_by_len(by_len)?;
        // SAFETY: the lengths' readable bytes (the caller's contract).
        let (key, to, by) = unsafe {
            (
                bytes(key, key_len, "key")?,
                source_arg(to, to_len, "to")?,
                text(by, by_len, "by")?,
            )
        };
        let rebase = f.fence.rebase(key, &to, by)?;
        // SAFETY: `out_cleared` is NULL (not wanted) or writable (the caller's contract).
        if let Some(out) = unsafe { Out::new(out_cleared) } {
            out.write(fk_token::from_kernel(rebase.cleared_mark));
        }
        Ok(())
    })
}

/// A token another coordinator's numbers map to; one the mapping refused is
/// `FK_STATUS_INVALID_TOKEN`.
fn mapped(token: Result<Token, kernel::FenceError>) -> Result<fk_token, Failure> {
    Ok(fk_token::from_kernel(Some(token?)))
}

/// The token of an etcd election's leader or mutex's owner: its key's create revision
/// (`Election.Rev()`) and the session's lease id. Check it from the source
/// `etcd:<cluster id, 16 lowercase hex digits>`.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_token_from_etcd(
    create_revision: i64,
    lease_id: i64,
    out: *mut fk_token,
) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", || {
        mapped(Token::from_etcd(create_revision, lease_id))
    })
}

/// The token of a ZooKeeper election's leader or lock's owner: the winning znode's `czxid` and
/// `ephemeralOwner`. Check it from the source `zookeeper:<ensemble name>`.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_token_from_zookeeper(
    czxid: i64,
    ephemeral_owner: i64,
    out: *mut fk_token,
) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", || {
        mapped(Token::from_zookeeper(czxid, ephemeral_owner))
    })
}

/// The token of a Kubernetes Lease's holder: `spec.leaseTransitions` + 1 and the 64-bit
/// FNV-1a of `spec.holderIdentity` (the `identity_len` bytes at `identity`; 1 where the hash
/// is 0). Check it from the source `k8s-lease:<namespace>/<name>/<metadata.uid>`.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `identity` points to `identity_len` readable bytes; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_token_from_kubernetes_lease(
    lease_transitions: i32,
    identity: *const c_char,
    identity_len: usize,
    out: *mut fk_token,
) -> fk_status {
    // SAFETY: `out` is NULL or writable (the caller's contract).
    let out = unsafe { Out::new(out) };
    without_handle_out(out, "out", || {
        // SAFETY: `identity_len` readable bytes (the caller's contract).
        let identity = unsafe { text(identity, identity_len, "identity") }?;
        mapped(Token::from_kubernetes_lease(lease_transitions, identity))
    })
}
