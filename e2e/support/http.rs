//! Blocking HTTP and TCP clients for tests.
//!
//! Tests are plain `#[test]` functions; requests run on one shared tokio
//! runtime and the caller waits on a channel, which works whether or not the
//! caller is itself inside a runtime (where `block_on` would panic).

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("e2e-http")
            .enable_all()
            .build()
            .expect("building the e2e tokio runtime")
    })
}

/// Runs `fut` on the shared runtime and waits for its output.
pub fn block_on<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    runtime().spawn(async move {
        // The receiver only goes away if the caller panicked; nothing to do then.
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("the e2e runtime task panicked")
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// In arrival order; repeated headers appear repeatedly.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        found.map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the body when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "response ({}) is not JSON: {e}\nbody: {}",
                self.status, self.body
            )
        })
    }
}

/// Sends one request on a fresh connection, no proxy, 10s timeout.
///
/// A fresh client per request keeps requests independent: connection reuse
/// would hide load balancing and per-connection behaviour from tests.
/// `headers` may include `host` to pick an Envoy virtual host.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> anyhow::Result<HttpResponse> {
    send(
        method,
        url,
        headers,
        body,
        reqwest::redirect::Policy::default(),
    )
}

/// Like [`http_request`], but a redirect is returned to the caller as is
/// (status and `location`), never followed: tests check redirects Envoy
/// answers, and following one could leave the machine.
pub fn http_request_no_redirect(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> anyhow::Result<HttpResponse> {
    send(
        method,
        url,
        headers,
        body,
        reqwest::redirect::Policy::none(),
    )
}

fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
    redirects: reqwest::redirect::Policy,
) -> anyhow::Result<HttpResponse> {
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .with_context(|| format!("bad HTTP method {method:?}"))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(HTTP_TIMEOUT)
        .pool_max_idle_per_host(0)
        .redirect(redirects)
        .build()
        .context("building the HTTP client")?;
    let mut req = client.request(method.clone(), url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let what = format!("{method} {url}");
    block_on(async move {
        let resp = req.send().await.with_context(|| what.clone())?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        let body = resp.text().await.with_context(|| format!("{what}: body"))?;
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    })
}

/// GET `url`, optionally with a Host header; errors (refused, timeout) as `Err`
/// so polling loops can retry while config propagates.
pub fn try_http_get(url: &str, host: Option<&str>) -> anyhow::Result<(u16, String)> {
    let headers: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
    let resp = http_request("GET", url, &headers, None)?;
    Ok((resp.status, resp.body))
}

/// GET `url`, optionally with a Host header; panics on transport errors.
pub fn http_get(url: &str, host: Option<&str>) -> (u16, String) {
    try_http_get(url, host).unwrap_or_else(|e| panic!("GET {url} failed: {e:#}"))
}

/// Sends `line` over a new TCP connection and returns the first line back
/// (without the newline).
pub fn tcp_line(addr: SocketAddr, line: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply.trim_end_matches(['\r', '\n']).to_string())
}
