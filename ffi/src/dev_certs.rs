//! Development certificates from C: a CA and node certificates for a secure test group, the
//! same files `fencekit certs init` and `fencekit certs add` make. For tests and samples;
//! production groups use their own PKI with the same identity URIs (`ffi/README.md`).

use std::ffi::c_char;
use std::path::Path;

use kernel::transport::tcp::dev_certs;
use kernel::{ClusterId, NodeId};

use crate::boundary::{self, Failure, directory, without_handle};
use crate::status::{FK_STATUS_INVALID_ARGUMENT, fk_status};

/// Most node ids in one `fk_dev_certs_init` call.
pub const FK_DEV_CERTS_NODES_MAX: usize = 1024;

/// Makes a development CA for `cluster` in the directory `dir` (`dir_len` bytes of UTF-8,
/// created if missing; it must not hold a CA already), and a certificate for each of the
/// `nodes_len` node ids at `nodes`. Node `n`'s files are in `dir/node-<n>/`: pass that
/// directory as the node configuration's `"tls": {"dir": ...}`. `dir/ca.key` can mint members:
/// keep it private.
///
/// Fails with `FK_STATUS_INVALID_ARGUMENT` for a node id of 0 or more than
/// `FK_DEV_CERTS_NODES_MAX` ids, `FK_STATUS_TLS` for a directory that holds a CA already,
/// `FK_STATUS_IO` if a file cannot be written.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `dir` points to `dir_len` readable bytes; `nodes` points to `nodes_len` readable `uint64_t`
/// (or is NULL when `nodes_len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_dev_certs_init(
    dir: *const c_char,
    dir_len: usize,
    cluster: u64,
    nodes: *const u64,
    nodes_len: usize,
) -> fk_status {
    without_handle(|| {
        // SAFETY: `dir_len` readable bytes (the caller's contract).
        let dir = unsafe { directory(dir, dir_len, "certificates") }?;
        if nodes_len > FK_DEV_CERTS_NODES_MAX {
            return Err(Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                format!("{nodes_len} node ids: at most {FK_DEV_CERTS_NODES_MAX}"),
            ));
        }
        let len = nodes_len * std::mem::size_of::<u64>();
        // SAFETY: `nodes_len` readable u64 (the caller's contract); read as bytes, so no
        // alignment is assumed.
        let raw = unsafe { boundary::bytes(nodes.cast(), len, "nodes") }?;
        let ids = raw
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                let id = u64::from_ne_bytes(b);
                NodeId::new(id).map_err(|_| {
                    Failure::new(
                        FK_STATUS_INVALID_ARGUMENT,
                        format!("node id {id}: must be 1 to 2^64 - 1"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(dev_certs::init(
            Path::new(dir),
            ClusterId::new(cluster),
            &ids,
        )?)
    })
}

/// Makes a certificate for node `node` with the development CA in `dir` (made by
/// `fk_dev_certs_init`), in `dir/node-<node>/`. Fails with `FK_STATUS_TLS` if the node has one
/// already or `dir` holds no development CA.
///
/// Thread safety: any thread.
///
/// # Safety
///
/// `dir` points to `dir_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fk_dev_certs_add(
    dir: *const c_char,
    dir_len: usize,
    node: u64,
) -> fk_status {
    without_handle(|| {
        // SAFETY: `dir_len` readable bytes (the caller's contract).
        let dir = unsafe { directory(dir, dir_len, "certificates") }?;
        let node = NodeId::new(node).map_err(|_| {
            Failure::new(
                FK_STATUS_INVALID_ARGUMENT,
                format!("node id {node}: must be 1 to 2^64 - 1"),
            )
        })?;
        dev_certs::add(Path::new(dir), node)?;
        Ok(())
    })
}
