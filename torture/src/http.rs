//! The harness's HTTP client: plain HTTP to the nodes' `/status`, HTTPS to the store showing a
//! node's certificate (the store takes the writer's identity from it). Every status code is
//! answered, not turned into an error; one deadline bounds each whole call.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ureq::tls::{
    Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider, parse_pem,
};

/// A client with a deadline per call.
#[derive(Clone)]
pub(crate) struct Http {
    agent: ureq::Agent,
    scheme: &'static str,
}

impl Http {
    /// Plain HTTP.
    pub(crate) fn plain(timeout: Duration) -> Http {
        Http::build(timeout, "http", TlsConfig::default())
    }

    /// HTTPS trusting `ca.crt` of `dir`, showing `node.crt`/`node.key` of `dir` (a directory
    /// `fencekit certs init` made for one node).
    pub(crate) fn https(timeout: Duration, node_dir: &Path) -> Result<Http> {
        let read = |name: &str| {
            let path = node_dir.join(name);
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
        };
        let roots: Vec<Certificate<'static>> = certificates(&read("ca.crt")?)?;
        let chain = certificates(&read("node.crt")?)?;
        let key = PrivateKey::from_pem(&read("node.key")?).context("node.key")?;
        let config = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(RootCerts::new_with_certs(&roots))
            .client_cert(Some(ClientCert::new_with_certs(&chain, key)))
            .build();
        Ok(Http::build(timeout, "https", config))
    }

    fn build(timeout: Duration, scheme: &'static str, tls: TlsConfig) -> Http {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // The servers close connections idle for 10 s.
            .max_idle_age(Duration::from_secs(5))
            .tls_config(tls)
            .build();
        Http {
            agent: config.into(),
            scheme,
        }
    }

    /// `GET {scheme}://{addr}{path}`: the status code and the body.
    pub(crate) fn get(&self, addr: &str, path: &str) -> Result<(u16, String)> {
        let url = format!("{}://{addr}{path}", self.scheme);
        read(self.agent.get(&url).call(), &url)
    }

    /// `POST` with an empty body.
    pub(crate) fn post(&self, addr: &str, path: &str) -> Result<(u16, String)> {
        let url = format!("{}://{addr}{path}", self.scheme);
        read(self.agent.post(&url).send_empty(), &url)
    }
}

fn read(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    url: &str,
) -> Result<(u16, String)> {
    let response = response.with_context(|| url.to_owned())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    Ok((status, body))
}

fn certificates(pem: &[u8]) -> Result<Vec<Certificate<'static>>> {
    let mut certificates = Vec::new();
    for item in parse_pem(pem) {
        if let PemItem::Certificate(c) = item.context("PEM")? {
            certificates.push(c);
        }
    }
    if certificates.is_empty() {
        bail!("no certificate in the PEM file");
    }
    Ok(certificates)
}
