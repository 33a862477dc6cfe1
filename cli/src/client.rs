//! The HTTP client of `fencekit status`, the scheduler and the demo: short timeouts, every
//! status code answered (not turned into an error), bodies read as text.

use std::time::Duration;

use anyhow::{Context, Result};

/// An HTTP client with one deadline for each whole call.
#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
}

impl Client {
    pub(crate) fn new(timeout: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build();
        Client {
            agent: config.into(),
        }
    }

    /// `GET http://{addr}{path}`: the status code and the body.
    pub(crate) fn get(&self, addr: &str, path: &str) -> Result<(u16, String)> {
        let url = format!("http://{addr}{path}");
        let response = self
            .agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        read(response, &url)
    }

    /// `POST http://{addr}{path}` with an empty body (the endpoints take query parameters).
    pub(crate) fn post(&self, addr: &str, path: &str) -> Result<(u16, String)> {
        let url = format!("http://{addr}{path}");
        let response = self
            .agent
            .post(&url)
            .send_empty()
            .with_context(|| format!("POST {url}"))?;
        read(response, &url)
    }
}

fn read(response: ureq::http::Response<ureq::Body>, url: &str) -> Result<(u16, String)> {
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    Ok((status, body))
}
