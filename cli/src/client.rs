//! The HTTP client of `fencekit status`, the scheduler and the demo: short timeouts, every
//! status code answered (not turned into an error), bodies read as text. Over HTTPS it shows
//! a certificate of the group's CA and checks the server's against that CA and its address.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use fencekit::transport::tcp::tls::TlsMaterial;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

/// An HTTP client with one deadline for each whole call.
#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    scheme: &'static str,
}

impl Client {
    /// A plain HTTP client.
    pub(crate) fn new(timeout: Duration) -> Client {
        Client::build(timeout, None)
    }

    /// An HTTPS client that trusts `tls.ca` only and shows `tls.chain`.
    pub(crate) fn https(timeout: Duration, tls: &TlsMaterial) -> Client {
        let der = |c: &rustls::pki_types::CertificateDer<'_>| {
            Certificate::from_der(c.as_ref()).to_owned()
        };
        // The key was parsed from this PEM already: it parses again.
        let key = PrivateKey::from_pem(&tls.key_pem).ok();
        let chain: Vec<_> = tls.chain.iter().map(der).collect();
        let roots: Vec<_> = tls.ca.iter().map(der).collect();
        let config = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(RootCerts::new_with_certs(&roots))
            .client_cert(key.map(|key| ClientCert::new_with_certs(&chain, key)))
            .build();
        Client::build(timeout, Some(config))
    }

    fn build(timeout: Duration, tls: Option<TlsConfig>) -> Client {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // Servers close a connection idle for 10 s: never reuse one that old.
            .max_idle_age(Duration::from_secs(5))
            .tls_config(tls.unwrap_or_default())
            .build();
        Client {
            agent: config.into(),
            scheme,
        }
    }

    /// `GET {scheme}://{addr}{path}`: the status code and the body.
    pub(crate) fn get(&self, addr: &str, path: &str) -> Result<(u16, String)> {
        self.call("GET", addr, path, None)
    }

    /// `POST {scheme}://{addr}{path}` with an empty body (the endpoints take query parameters).
    pub(crate) fn post(&self, addr: &str, path: &str) -> Result<(u16, String)> {
        self.call("POST", addr, path, None)
    }

    /// `POST` with `Authorization: Bearer {token}` (the node's admin endpoints).
    pub(crate) fn post_authorized(
        &self,
        addr: &str,
        path: &str,
        token: &str,
    ) -> Result<(u16, String)> {
        self.call("POST", addr, path, Some(token))
    }

    fn call(
        &self,
        method: &str,
        addr: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<(u16, String)> {
        let url = format!("{}://{addr}{path}", self.scheme);
        let response = if method == "GET" {
            let mut request = self.agent.get(&url);
            if let Some(token) = token {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            request.call()
        } else {
            let mut request = self.agent.post(&url);
            if let Some(token) = token {
                request = request.header("Authorization", format!("Bearer {token}"));
            }
            request.send_empty()
        };
        let response = response.with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))?;
        Ok((status, body))
    }
}
