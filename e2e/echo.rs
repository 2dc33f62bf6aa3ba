//! rudder-echo: a tiny backend for e2e tests and the demo.
//!
//! HTTP mode answers every request with JSON describing it (so a test can see
//! which backend Envoy picked and what headers arrived); `GET /status/NNN`
//! answers NNN. `--tcp` mode echoes each line prefixed with `NAME: `.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clap::Parser;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "HTTP/TCP echo backend for Rudder's e2e tests")]
struct Args {
    /// Address to listen on, IP:PORT (port 0 picks a free one).
    #[arg(long)]
    listen: SocketAddr,
    /// Backend name reported in every answer.
    #[arg(long)]
    name: String,
    /// Line-echo TCP server instead of HTTP.
    #[arg(long)]
    tcp: bool,
}

#[derive(Clone)]
struct Backend {
    name: String,
    listen: SocketAddr,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    let backend = Backend {
        name: args.name,
        listen: listener.local_addr()?,
    };
    // Tests wait for this line (or the port) before sending traffic.
    println!(
        "rudder-echo {} listening on {}",
        backend.name, backend.listen
    );
    if args.tcp {
        serve_tcp(listener, backend.name).await
    } else {
        serve_http(listener, backend).await
    }
}

async fn serve_http(listener: TcpListener, backend: Backend) -> anyhow::Result<()> {
    let app = axum::Router::new().fallback(echo).with_state(backend);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}

async fn echo(
    State(backend): State<Backend>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let status = requested_status(&method, uri.path()).unwrap_or(StatusCode::OK);
    // HTTP/2 carries the host in :authority, HTTP/1.1 in the Host header.
    let host = uri
        .authority()
        .map(|a| a.to_string())
        .or_else(|| header_str(&headers, "host"))
        .unwrap_or_default();
    let body = json!({
        "backend": backend.name,
        "listen": backend.listen.to_string(),
        "peer": peer.to_string(),
        "method": method.as_str(),
        "path": uri.path_and_query().map_or("/", |p| p.as_str()),
        "host": host,
        "headers": header_map(&headers),
    });
    (status, Json(body)).into_response()
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
