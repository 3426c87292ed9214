//! A small HTTP/1.1 server on tokio's `TcpListener`: `GET /` (the page), `GET /api/summary` and `GET /api/filters`
//! (JSON), `GET /export/<table>.csv` (a table as CSV), one request per connection, validated parameters, and one warehouse connection shared by the requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};
use tokio::task::JoinHandle;

use super::filters::Filters;
use super::html::{self, CSP, Mode};
use super::{DashboardError, queries};
use crate::warehouse::Loader;

/// The longest request head accepted (request line and headers).
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection is kept open after the response for the client to close it.
const LINGER: Duration = Duration::from_millis(500);
/// Connections served at once; more wait in the listener's backlog.
const MAX_CONNECTIONS: usize = 32;

struct State {
    warehouse: Mutex<Box<dyn Loader>>,
    /// Bound to a loopback address: only accept `Host` headers that name one (defeats DNS rebinding).
    loopback: bool,
}

/// A running dashboard; dropping it stops the server.
pub struct Server {
    addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind `addr` (port 0 picks a free port) and serve the dashboard over `warehouse` until dropped.
    pub async fn start(
        warehouse: impl Into<Box<dyn Loader>>,
        addr: SocketAddr,
    ) -> Result<Server, DashboardError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DashboardError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DashboardError::Bind { addr, source })?;
        let state = Arc::new(State {
            warehouse: Mutex::new(warehouse.into()),
            loopback: addr.ip().is_loopback(),
        });
        let task = tokio::spawn(accept_loop(listener, state));
        Ok(Server {
            addr,
            task: Some(task),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until the process is stopped.
    pub async fn wait(mut self) -> Result<(), DashboardError> {
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| DashboardError::Stopped(e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &state).await {
                        tracing::debug!(%peer, error = %e, "dashboard connection ended");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "dashboard: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What the server answers.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    allow: bool,
}

impl Response {
    fn html(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            allow: false,
        }
    }

    fn json(status: u16, body: &serde_json::Value) -> Response {
        let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
        bytes.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body: bytes,
            allow: false,
        }
    }

    /// An error in the form the route speaks: JSON under `/api/`, an HTML page elsewhere.
    fn error(api: bool, status: u16, message: &str) -> Response {
        if api {
            Response::json(status, &json!({ "error": message }))
        } else {
            Response::html(status, html::error_page(&status_line(status), message))
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Error",
    }
}

fn status_line(status: u16) -> String {
    format!("{status} {}", reason(status))
}

/// The parts of a request the routes use.
struct Request {
    method: String,
    path: String,
    query: String,
    host: Option<String>,
}

/// Parse a request head (up to the blank line).
fn parse_head(head: &str) -> Option<Request> {
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let target = request_line.next()?;
    let version = request_line.next()?;
    if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let host = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim().to_string());
    Some(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        host,
    })
}

/// Whether a `Host` header names a loopback address or `localhost` (any port).
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn read_head(stream: &mut TcpStream) -> Result<Option<String>, std::io::Error> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn serve(mut stream: TcpStream, state: &State) -> Result<(), std::io::Error> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    };
    let (response, head_only) = match head.as_deref().map(parse_head) {
        None => (
            Response::error(false, 431, "the request head is too large"),
            false,
        ),
        Some(None) => (
            Response::error(false, 400, "not an HTTP/1.x request"),
            false,
        ),
        Some(Some(request)) => {
            let head_only = request.method == "HEAD";
            (route(&request, state).await, head_only)
        }
    };
    write_response(&mut stream, &response, head_only).await
}

async fn write_response(
    stream: &mut TcpStream,
    r: &Response,
    head_only: bool,
) -> Result<(), std::io::Error> {
    let mut head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: {CSP}\r\n",
        status_line(r.status),
        r.content_type,
        r.body.len()
    );
    if r.allow {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(&r.body).await?;
    }
    stream.shutdown().await?;
    // Read what the client still sends (the rest of a refused head) until it closes, briefly: closing a socket with
    // unread input resets the connection, and the client could lose the response.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Ok(())
}

async fn route(request: &Request, state: &State) -> Response {
    let api = request.path.starts_with("/api/");
    if request.method != "GET" && request.method != "HEAD" {
        let mut r = Response::error(api, 405, "only GET and HEAD are served");
        r.allow = true;
        return r;
    }
    if state.loopback && !request.host.as_deref().is_some_and(loopback_host) {
        return Response::error(
            api,
            400,
            "the Host header must name 127.0.0.1, [::1] or localhost (this dashboard only serves this machine)",
        );
    }
    match request.path.as_str() {
        "/" | "/api/summary" => {
            let filters = match Filters::from_query(&request.query) {
                Ok(f) => f,
                Err(e) => return Response::error(api, 400, &e.to_string()),
            };
            let mut warehouse = state.warehouse.lock().await;
            let result = async {
                let client = warehouse.client().await?;
                let summary = queries::summary(client, &filters).await?;
                let options = if api {
                    None
                } else {
                    Some(queries::filter_options(client).await?)
                };
                Ok::<_, DashboardError>((summary, options))
            }
            .await;
            match result {
                Ok((summary, None)) => Response::json(200, &summary.to_json()),
                Ok((summary, Some(options))) => {
                    Response::html(200, html::page(&summary, &options, &Mode::Live))
                }
                Err(e) => server_error(api, &e),
            }
        }
        "/api/filters" => {
            let mut warehouse = state.warehouse.lock().await;
            let result = async {
                let client = warehouse.client().await?;
                queries::filter_options(client).await
            }
            .await;
            match result {
                Ok(options) => Response::json(200, &options.to_json()),
                Err(e) => server_error(api, &e),
            }
        }
        path if path.starts_with("/export/") => export(request, state).await,
        _ => Response::error(api, 404, "no such page; the dashboard is at /"),
    }
}

/// `GET /export/<table>.csv?<filters>`: one of the page's tables as CSV (aggregates only).
async fn export(request: &Request, state: &State) -> Response {
    let Some(table) = request
        .path
        .strip_prefix("/export/")
        .and_then(|p| p.strip_suffix(".csv"))
    else {
        return Response::error(false, 404, "no such export; expected /export/<table>.csv");
    };
    let filters = match Filters::from_query(&request.query) {
        Ok(f) => f,
        Err(e) => return Response::error(false, 400, &e.to_string()),
    };
    let mut warehouse = state.warehouse.lock().await;
    match super::export(warehouse.as_mut(), &filters, table).await {
        Ok(Some(csv)) => Response {
            status: 200,
            content_type: "text/csv; charset=utf-8",
            body: csv.into_bytes(),
            allow: false,
        },
        Ok(None) => Response::error(
            false,
            404,
            &format!(
                "no table '{table}' to export; expected one of {}",
                super::tables::ids().collect::<Vec<_>>().join(", ")
            ),
        ),
        Err(e) => server_error(false, &e),
    }
}

fn server_error(api: bool, e: &DashboardError) -> Response {
    tracing::error!(error = %e, "dashboard query failed");
    Response::error(api, 500, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_yields_method_path_query_and_host() {
        let r =
            parse_head("GET /api/summary?payer=3 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nAccept: */*")
                .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/summary");
        assert_eq!(r.query, "payer=3");
        assert_eq!(r.host.as_deref(), Some("127.0.0.1:8080"));
        assert!(parse_head("GET http://x/ HTTP/1.1").is_none());
        assert!(parse_head("hello").is_none());
    }

    #[test]
    fn only_loopback_host_names_are_accepted_on_a_loopback_server() {
        for ok in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:8080",
            "127.0.0.2",
        ] {
            assert!(loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "10.0.0.1",
            "localhost.evil.example",
            "",
        ] {
            assert!(!loopback_host(bad), "{bad}");
        }
    }
}
