//! The store's HTTPS: its certificate names `fencekit://<cluster>/store`, and clients may show
//! certificates of the same CA. A client's certificate is what names the writer
//! ([`super::writer`]); `/healthz` and `/metrics` answer without one, for probes and scrapers.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use fencekit::ClusterId;
use fencekit::transport::tcp::tls::{self, TlsFiles, TlsMaterial};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;

/// The server configuration, and the cluster the CA was made for.
pub(crate) struct StoreTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) cluster: ClusterId,
}

/// Loads the store's TLS files from `dir` (`store.crt`, `store.key`, `ca.crt`, as `fencekit
/// certs init` makes them in `DIR/store/`).
pub(crate) fn load(dir: &Path) -> Result<StoreTls> {
    let files = TlsFiles::store_in_dir(dir);
    let TlsMaterial { chain, key, ca, .. } = files.read().map_err(|e| anyhow!("--tls-dir: {e}"))?;
    let cluster = tls::cluster_of_ca(&ca[0])
        .map_err(|e| anyhow!("--tls-dir: {}: {e}", files.ca.display()))?;
    let uris = tls::uris(&chain[0]).map_err(|e| anyhow!("{}: {e}", files.cert.display()))?;
    if !uris.contains(&tls::store_uri(cluster)) {
        bail!(
            "{}: it does not name {} (its URIs: {uris:?}): not the store's certificate of \
             cluster {cluster} (`fencekit certs add --dir DIR --store-hosts HOSTS` makes one)",
            files.cert.display(),
            tls::store_uri(cluster)
        );
    }
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots
            .add(cert)
            .map_err(|e| anyhow!("{}: not a usable CA: {e}", files.ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let clients = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        // Anonymous clients reach /healthz and /metrics only: the writer endpoints refuse
        // them (401). A certificate shown is always verified.
        .allow_unauthenticated()
        .clear_root_hint_subjects()
        .build()
        .map_err(|e| anyhow!("{}: {e}", files.ca.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| anyhow!("{e}"))?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)
        .map_err(|e| anyhow!("{}: {e}", files.cert.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(StoreTls {
        config: Arc::new(config),
        cluster,
    })
}
