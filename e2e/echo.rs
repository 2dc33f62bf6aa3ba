//! rudder-echo: a tiny backend for e2e tests and the demo.
//!
//! HTTP mode answers every request with JSON describing it (so a test can see
//! which backend Envoy picked and what headers arrived); `GET /status/NNN`
//! answers NNN. `--tcp` mode echoes each line prefixed with `NAME: `.
//!
//! Applications in a mesh call each other by name, unaware of the sidecar:
//! with `--call-http URL` and/or `--call-tcp HOST:PORT`, `GET /chain` first
//! calls those upstreams and nests their answers. `--send-tcp HOST:PORT` is a
//! one-shot client: send `--line`, print the first line back, exit.
//! `--jwks-file FILE` serves FILE (re-read on every request) at
//! `GET /jwks.json`: a JWKS server for RequestAuthentication `jwksUri`.
//! `--tls-cert FILE --tls-key FILE` serve HTTPS instead, and each answer
//! adds the SNI name the client sent (`sni`): a TLS backend behind a proxy
//! that passes TLS through.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::Json;
use clap::Parser;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{lookup_host, TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

/// Bound on each upstream call and on the `--send-tcp` client, so a black-
/// holed connection fails the request instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(about = "HTTP/TCP echo backend for Rudder's e2e tests")]
struct Args {
    /// Address to listen on, IP:PORT (port 0 picks a free one).
    #[arg(long, required_unless_present = "send_tcp")]
    listen: Option<SocketAddr>,
    /// Backend name reported in every answer.
    #[arg(long, required_unless_present = "send_tcp")]
    name: Option<String>,
    /// Line-echo TCP server instead of HTTP.
    #[arg(long)]
    tcp: bool,
    /// On `GET /chain`, first GET this plain-HTTP URL (e.g.
    /// `http://api.demo:9090/chain`; the host is resolved by the system
    /// resolver) and nest its answer under `upstream`.
    #[arg(long, value_name = "URL", conflicts_with = "tcp")]
    call_http: Option<String>,
    /// On `GET /chain`, first send a line to this TCP line service and nest
    /// its reply under `tcp_upstream`.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "tcp")]
    call_tcp: Option<String>,
    /// Client mode: connect to HOST:PORT, send `--line`, print the first line
    /// back and exit (1 on errors, 3 when closed without a reply).
    #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["listen", "tcp"])]
    send_tcp: Option<String>,
    /// The line `--send-tcp` sends.
    #[arg(long, default_value = "ping", requires = "send_tcp")]
    line: String,
    /// Serve this file as `application/json` at `GET /jwks.json`.
    #[arg(long, value_name = "FILE", conflicts_with = "tcp")]
    jwks_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM) and `--tls-key`.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tcp"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Clone)]
struct Backend {
    name: String,
    listen: SocketAddr,
    call_http: Option<String>,
    call_tcp: Option<String>,
    jwks_file: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(target) = &args.send_tcp {
        return send_tcp_client(target, &args.line).await;
    }
    let (Some(listen), Some(name)) = (args.listen, args.name) else {
        anyhow::bail!("--listen and --name are required to serve");
    };
    let listener = TcpListener::bind(listen).await?;
    let backend = Backend {
        name,
        listen: listener.local_addr()?,
        call_http: args.call_http,
        call_tcp: args.call_tcp,
        jwks_file: args.jwks_file,
    };
    // Tests wait for this line (or the port) before sending traffic.
    println!(
        "rudder-echo {} listening on {}",
        backend.name, backend.listen
    );
    if args.tcp {
        return serve_tcp(listener, backend.name).await;
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
        _ => None,
    };
    let app = axum::Router::new().fallback(echo).with_state(backend);
    let service = app.into_make_service_with_connect_info::<Peer>();
    match tls {
        Some(config) => axum::serve(TlsListener::new(listener, config)?, service).await?,
        None => axum::serve(listener, service).await?,
    }
    Ok(())
}

/// Who called: the peer's address and, over TLS, the SNI name it sent.
#[derive(Clone, Debug)]
struct Peer {
    addr: SocketAddr,
    sni: Option<String>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer {
            addr: *stream.remote_addr(),
            sni: None,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
        stream.remote_addr().clone()
    }
}

fn tls_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// Connections whose TLS handshake is done, from Rudder's own accept loop.
struct TlsListener {
    local: SocketAddr,
    handshaken: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    _accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (handshaken, accepting) = rudder::xds::tls_handshakes(listener, config, "echo");
        Ok(TlsListener {
            local,
            handshaken,
            _accepting: accepting,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let Some((tls, addr)) = self.handshaken.recv().await else {
            // The accept loop ends only when this listener is dropped.
            return std::future::pending().await;
        };
        let sni = tls.get_ref().1.server_name().map(str::to_string);
        (tls, Peer { addr, sni })
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            sni: None,
        })
    }
}

async fn echo(
    State(backend): State<Backend>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if let (Some(file), true) = (&backend.jwks_file, uri.path() == "/jwks.json") {
        return match tokio::fs::read_to_string(file).await {
            Ok(jwks) => (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                jwks,
            )
                .into_response(),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{}: {e}", file.display()),
            )
                .into_response(),
        };
    }
    let status = requested_status(&method, uri.path()).unwrap_or(StatusCode::OK);
    // HTTP/2 carries the host in :authority, HTTP/1.1 in the Host header.
    let host = uri
        .authority()
        .map(|a| a.to_string())
        .or_else(|| header_str(&headers, "host"))
        .unwrap_or_default();
    let mut body = json!({
        "backend": backend.name,
        "listen": backend.listen.to_string(),
        "peer": peer.addr.to_string(),
        "method": method.as_str(),
        "path": uri.path_and_query().map_or("/", |p| p.as_str()),
        "host": host,
        "headers": header_map(&headers),
    });
    if let Some(sni) = peer.sni {
        body["sni"] = sni.into();
    }
    let mut status = status;
    if method == Method::GET && uri.path() == "/chain" {
        let calls_ok = chain_calls(&backend, &mut body).await;
        if !calls_ok {
            status = StatusCode::BAD_GATEWAY;
        }
    }
    (status, Json(body)).into_response()
}

/// Makes the configured upstream calls, nesting each result in `body`;
/// false when any failed (the answer then is a 502, like a proxy's).
async fn chain_calls(backend: &Backend, body: &mut Value) -> bool {
    let mut ok = true;
    if let Some(url) = &backend.call_http {
        let result = match http_get(url).await {
            Ok((code, text)) => {
                ok &= code == 200;
                let nested = serde_json::from_str(&text).unwrap_or(Value::String(text));
                json!({"url": url, "status": code, "body": nested})
            }
            Err(e) => {
                ok = false;
                json!({"url": url, "error": format!("{e:#}")})
            }
        };
        body["upstream"] = result;
    }
    if let Some(target) = &backend.call_tcp {
        let result = match tcp_exchange(target, &backend.name).await {
            Ok(Some(reply)) => json!({"addr": target, "reply": reply}),
            Ok(None) => {
                ok = false;
                json!({"addr": target, "error": "connection closed without a reply"})
            }
            Err(e) => {
                ok = false;
                json!({"addr": target, "error": format!("{e:#}")})
            }
        };
        body["tcp_upstream"] = result;
    }
    ok
}

/// Resolves `host:port` with the system resolver (so a pod's hosts file
/// applies) and connects to its first address.
async fn connect(target: &str) -> anyhow::Result<TcpStream> {
    let addr = lookup_host(target)
        .await
        .with_context(|| format!("resolving {target}"))?
        .next()
        .with_context(|| format!("{target} has no address"))?;
    let stream = timeout(CALL_TIMEOUT, TcpStream::connect(addr))
        .await
        .with_context(|| format!("connecting to {target} ({addr}): timed out"))?
        .with_context(|| format!("connecting to {target} ({addr})"))?;
    Ok(stream)
}

/// A plain HTTP/1.1 GET on a fresh connection (`Connection: close`, so the
/// body ends at EOF unless chunked). Enough for calls between test apps.
async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let target = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = connect(&target).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: rudder-echo\r\nConnection: close\r\n\r\n"
    );
    let mut raw = Vec::new();
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        stream.read_to_end(&mut raw).await
    };
    timeout(CALL_TIMEOUT, exchange)
        .await
        .with_context(|| format!("GET {url}: timed out"))?
        .with_context(|| format!("GET {url}"))?;
    parse_response(&raw).with_context(|| format!("GET {url}: bad response"))
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {} bytes", raw.len()))?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("truncated chunk size")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or_default().trim(), 16)
            .with_context(|| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).context("truncated chunk")?;
        out.push_str(chunk);
        body = rest
            .get(size..)
            .unwrap_or_default()
            .trim_start_matches("\r\n");
    }
}

/// Sends `line` to a line service; `Ok(None)` when it closed without a reply.
async fn tcp_exchange(target: &str, line: &str) -> anyhow::Result<Option<String>> {
    let stream = connect(target).await?;
    let (read, mut write) = stream.into_split();
    let exchange = async {
        write.write_all(format!("{line}\n").as_bytes()).await?;
        BufReader::new(read).lines().next_line().await
    };
    let reply = timeout(CALL_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{target}: no reply within {CALL_TIMEOUT:?}"))?
        .with_context(|| format!("talking to {target}"))?;
    Ok(reply)
}

/// One line of output either way: tests quote stderr in their messages.
async fn send_tcp_client(target: &str, line: &str) -> anyhow::Result<()> {
    match tcp_exchange(target, line).await {
        Ok(Some(reply)) => {
            println!("{reply}");
            Ok(())
        }
        Ok(None) => {
            eprintln!("{target}: connection closed without a reply");
            std::process::exit(3);
        }
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
    }
}

/// `GET /status/NNN` answers NNN, so tests can provoke retries and outlier ejection.
fn requested_status(method: &Method, path: &str) -> Option<StatusCode> {
    if method != Method::GET {
        return None;
    }
    let code = path.strip_prefix("/status/")?.parse::<u16>().ok()?;
    StatusCode::from_u16(code).ok()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

/// Repeated headers are joined with ", " (the HTTP list form) so none is lost.
fn header_map(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(name.as_str().to_string(), values.join(", ").into());
    }
    Value::Object(out)
}

async fn serve_tcp(listener: TcpListener, name: String) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            // A client that goes away mid-line is normal in tests; nothing to report.
            let _ = echo_lines(stream, &name).await;
        });
    }
}

async fn echo_lines(stream: TcpStream, name: &str) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        write
            .write_all(format!("{name}: {line}\n").as_bytes())
            .await?;
    }
    Ok(())
}
