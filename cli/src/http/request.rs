//! A request as handlers see it (method, path, query, who sent it) and their answer.

use fencekit::transport::tcp::tls::Identity;

/// A request. The endpoints take no body: their input is the query.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path, without the query.
    pub(crate) path: String,
    /// The query's `name=value` pairs, in order; each name at most once.
    pub(crate) query: Vec<(String, String)>,
    /// Who the client's certificate names, on HTTPS with client certificates.
    pub(crate) peer: Option<Identity>,
    /// The token of an `Authorization: Bearer` header.
    pub(crate) bearer: Option<String>,
}

impl Request {
    /// Parses the parts hyper read; `Err` is the reason for a 400.
    pub(crate) fn parse(
        parts: &hyper::http::request::Parts,
        peer: Option<Identity>,
        params_max: usize,
    ) -> Result<Request, String> {
        let mut query: Vec<(String, String)> = Vec::new();
        for pair in parts.uri.query().unwrap_or("").split('&') {
            if pair.is_empty() {
                continue;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if query.iter().any(|(n, _)| n == name) {
                // holder=1&holder=2: which one a handler read would be a guess.
                return Err(format!("the query names {name:?} twice"));
            }
            if query.len() == params_max {
                return Err(format!("the query has more than {params_max} parameters"));
            }
            query.push((name.to_owned(), value.to_owned()));
        }
        let mut authorization = parts.headers.get_all(hyper::header::AUTHORIZATION).iter();
        let bearer = match (authorization.next(), authorization.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => return Err("more than one Authorization header".to_owned()),
            (Some(value), None) => {
                let value = value
                    .to_str()
                    .map_err(|_| "the Authorization header is not ASCII".to_owned())?;
                // The scheme is case-insensitive (RFC 9110).
                let token = value
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim().to_owned())
                    .ok_or_else(|| "the Authorization header is not `Bearer TOKEN`".to_owned())?;
                Some(token)
            }
        };
        // HEAD is GET without the body (hyper leaves it out): probes may use either.
        let method = match parts.method.as_str() {
            "HEAD" => "GET",
            other => other,
        };
        Ok(Request {
            method: method.to_owned(),
            path: parts.uri.path().to_owned(),
            query,
            peer,
            bearer,
        })
    }

    /// The value of query parameter `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body,
        }
    }

    pub(crate) fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    /// A JSON error, `{"error": reason}`.
    pub(crate) fn error(status: u16, reason: impl std::fmt::Display) -> Reply {
        Reply::json(
            status,
            serde_json::json!({ "error": reason.to_string() }).to_string(),
        )
    }

    /// The OpenMetrics exposition `text`.
    pub(crate) fn metrics(text: String) -> Reply {
        Reply {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: text,
        }
    }
}
