//! How a node's peers prove who they are: mutual TLS by default, plaintext only when the
//! operator says `--insecure` (CockroachDB's way: secure unless told otherwise, loudly).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use fencekit::transport::tcp::Security;
use fencekit::transport::tcp::tls::TlsFiles;

#[derive(Args, Debug, Clone, Default)]
pub(crate) struct SecurityArgs {
    /// A directory with this node's node.crt, node.key and ca.crt (`fencekit certs init`
    /// makes one per node).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca", "insecure"])]
    pub(crate) tls_dir: Option<PathBuf>,
    /// This node's certificate (PEM), naming fencekit://<cluster>/<id>.
    #[arg(long, requires_all = ["tls_key", "tls_ca"], conflicts_with = "insecure")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// This node's private key (PEM), readable by its owner only.
    #[arg(long, requires_all = ["tls_cert", "tls_ca"], conflicts_with = "insecure")]
    pub(crate) tls_key: Option<PathBuf>,
    /// The CA certificate the group trusts (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_key"], conflicts_with = "insecure")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// No TLS: anyone who reaches this node's Raft port can join the group and obtain tokens
    /// every fence accepts. Only on a machine you trust entirely (a demo, a test).
    #[arg(long)]
    pub(crate) insecure: bool,
}

impl SecurityArgs {
    pub(crate) fn security(&self) -> Result<Security> {
        Ok(match self {
            SecurityArgs {
                tls_dir: Some(dir), ..
            } => Security::Tls(TlsFiles::in_dir(dir)),
            SecurityArgs {
                tls_cert: Some(cert),
                tls_key: Some(key),
                tls_ca: Some(ca),
                ..
            } => Security::Tls(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                ca: ca.clone(),
            }),
            SecurityArgs { insecure: true, .. } => Security::Insecure,
            _ => bail!(
                "peers must prove who they are: give --tls-dir DIR with this node's node.crt, \
                 node.key and ca.crt (`fencekit certs init --dir DIR --cluster C --nodes 1,2,3` \
                 makes them), or --tls-cert, --tls-key and --tls-ca; or --insecure to let \
                 anyone who reaches the port join the group"
            ),
        })
    }
}
