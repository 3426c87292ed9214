//! The dashboard's HTTP server: hyper's HTTP/1.1 on tokio, with keep-alive, request limits and a graceful stop.
//!
//! Routes: `GET /` (the page), `GET /api/summary` and `GET /api/filters` (JSON), `GET /export/<table>.csv` (a table
//! as CSV). Requests are answered over a small pool of warehouse sessions ([`super::pool`]), each summary inside
//! one read-only snapshot, and summaries are kept per filter set until the ledger says a load committed
//! ([`super::cache`]).
//!
//! Limits: a request head larger than [`MAX_HEAD`] is answered 431 by hyper, a query string longer than
//! [`MAX_QUERY`] 414, a head not received within [`HEAD_TIMEOUT`] closes the connection, and a request the warehouse
//! has not answered within [`REQUEST_TIMEOUT`] is answered 503. A server bound to a loopback address only answers
//! `Host` headers that name one (DNS rebinding), and every response carries the page's CSP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use super::DashboardError;
use super::cache::Cache;
use super::filters::Filters;
use super::html::{self, CSP, Mode};
use super::pool::{Connect, Pool};

/// The largest request head accepted (request line and headers): hyper answers 431 past it.
pub const MAX_HEAD: usize = 16 * 1024;
/// The longest query string accepted: longer ones are answered 414. Every filter at once is under 1 KiB.
pub const MAX_QUERY: usize = 4 * 1024;
/// How long a client may take to send a request head, the first or the next on a kept-alive connection.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may wait for the warehouse before it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stop waits for the requests in progress before it closes their connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listener's backlog.
const MAX_CONNECTIONS: usize = 64;
/// How often the server looks at the ledger to compute the landing page (no filters) and the filter choices ahead
/// of their viewers after a load committed; a look at an unchanged warehouse is one query on the ledger.
pub const WARM_EVERY: Duration = Duration::from_secs(10);

/// How the server is sized.
#[derive(Debug, Clone, Copy)]
pub struct ServerOptions {
    /// Warehouse sessions in the pool: how many requests query at once.
    pub sessions: usize,
    /// Summaries kept (one per filter set); 0 turns the cache off.
    pub cached_summaries: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            sessions: 4,
            cached_summaries: 256,
        }
    }
}

struct State {
    pool: Pool,
    cache: Cache,
    /// Bound to a loopback address: only accept `Host` headers that name one (defeats DNS rebinding).
    loopback: bool,
}

/// A running dashboard; dropping it stops the server at once, [`Server::stop`] drains it first.
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    warm: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind `addr` (port 0 picks a free port) and serve the dashboard, opening warehouse sessions with `connect`
    /// as requests need them.
    pub async fn start(
        connect: Connect,
        addr: SocketAddr,
        options: ServerOptions,
    ) -> Result<Server, DashboardError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| DashboardError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| DashboardError::Bind { addr, source })?;
        let state = Arc::new(State {
            pool: Pool::new(connect, options.sessions),
            cache: Cache::new(options.cached_summaries),
            loopback: addr.ip().is_loopback(),
        });
        let (stop, stopped) = watch::channel(false);
        let warm = (options.cached_summaries > 0)
            .then(|| tokio::spawn(warm_loop(state.clone(), stopped.clone())));
        let task = tokio::spawn(accept_loop(listener, state.clone(), stopped));
        Ok(Server {
            addr,
            state,
            stop,
            task: Some(task),
            warm,
        })
    }

    /// The number of loads in the ledger when the kept pages were computed (`None` while none is kept).
    pub fn kept_version(&self) -> Option<i64> {
        self.state.cache.kept_version()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, let the requests in progress finish (up to [`DRAIN_TIMEOUT`]), close every connection.
    pub async fn stop(mut self) -> Result<(), DashboardError> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Serve until one of `signals` arrives, then stop as [`Server::stop`] does.
    pub async fn serve_until(self, signals: Signals) -> Result<(), DashboardError> {
        signals.received().await;
        tracing::info!("dashboard: stopping (signal received)");
        self.stop().await
    }

    async fn join(&mut self) -> Result<(), DashboardError> {
        if let Some(warm) = self.warm.take() {
            warm.abort();
        }
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
        for task in [self.task.take(), self.warm.take()].into_iter().flatten() {
            task.abort();
        }
    }
}

/// Every [`WARM_EVERY`], bring the landing page and the filter choices up to the warehouse's version.
async fn warm_loop(state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    loop {
        if let Err(e) = warm(&state).await {
            tracing::debug!(error = %e, "dashboard: computing the landing page ahead failed");
        }
        tokio::select! {
            _ = stopped.changed() => return,
            () = tokio::time::sleep(WARM_EVERY) => {}
        }
    }
}

async fn warm(state: &State) -> Result<(), DashboardError> {
    let mut session = state.pool.get().await?;
    let client = session.client().await?;
    let at = state.cache.current(client).await?;
    state.cache.options(client, at.as_ref()).await?;
    state
        .cache
        .summary(client, at.as_ref(), &Filters::default())
        .await?;
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM (what `kill`, systemd and container runtimes send), caught from the moment
/// [`Signals::install`] returns: install them before telling anyone the server is up.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Catch SIGINT and SIGTERM from now on (instead of dying of them).
    pub fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = listener.accept() => accepted.map(|a| (a, permit)),
                },
                Err(_) => break,
            },
        };
        let ((stream, peer), permit) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "dashboard: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        let service = service_fn(move |request| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(answer(request, &state).await) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .max_buf_size(MAX_HEAD)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "dashboard connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!(timeout_s = DRAIN_TIMEOUT.as_secs(), "dashboard: requests still running at the stop were cut");
        }
    }
}

/// What the server answers.
struct Response {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    allow: bool,
}

impl Response {
    fn html(status: StatusCode, body: String) -> Response {
        Response {
            status,
            content_type: "text/html; charset=utf-8",
            body: body.into_bytes(),
            allow: false,
        }
    }

    fn json(status: StatusCode, body: &serde_json::Value) -> Response {
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
    fn error(api: bool, status: StatusCode, message: &str) -> Response {
        if api {
            Response::json(status, &json!({ "error": message }))
        } else {
            Response::html(status, html::error_page(&status_line(status), message))
        }
    }

    fn into_hyper(self) -> hyper::Response<Full<Bytes>> {
        let mut response = hyper::Response::new(Full::new(Bytes::from(self.body)));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        if self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        response
    }
}

fn status_line(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_str(),
        status.canonical_reason().unwrap_or("Error")
    )
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

/// The parts of a request the routes use.
struct Request<'a> {
    path: &'a str,
    query: &'a str,
}

async fn answer(request: hyper::Request<Incoming>, state: &State) -> hyper::Response<Full<Bytes>> {
    let path = request.uri().path();
    let api = path.starts_with("/api/");
    let response = if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut r = Response::error(
            api,
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served",
        );
        r.allow = true;
        r
    } else if state.loopback
        && !request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(loopback_host)
    {
        Response::error(
            api,
            StatusCode::BAD_REQUEST,
            "the Host header must name 127.0.0.1, [::1] or localhost (this dashboard only serves this machine)",
        )
    } else if request.uri().query().map_or(0, str::len) > MAX_QUERY {
        Response::error(
            api,
            StatusCode::URI_TOO_LONG,
            &format!("the query string is longer than {MAX_QUERY} bytes"),
        )
    } else {
        let routed = Request {
            path,
            query: request.uri().query().unwrap_or(""),
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, route(&routed, api, state)).await {
            Ok(response) => response,
            Err(_) => Response::error(
                api,
                StatusCode::SERVICE_UNAVAILABLE,
                &format!(
                    "the warehouse did not answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            ),
        }
    };
    // hyper leaves the body out of an answer to HEAD and keeps its Content-Length.
    response.into_hyper()
}

async fn route(request: &Request<'_>, api: bool, state: &State) -> Response {
    match request.path {
        "/" | "/api/summary" => {
            let filters = match Filters::from_query(request.query) {
                Ok(f) => f,
                Err(e) => return Response::error(api, StatusCode::BAD_REQUEST, &e.to_string()),
            };
            let result = async {
                let mut session = state.pool.get().await?;
                let client = session.client().await?;
                // One look at the ledger for everything the request reads.
                let at = state.cache.current(client).await?;
                let summary = state.cache.summary(client, at.as_ref(), &filters).await?;
                let options = if api {
                    None
                } else {
                    Some(state.cache.options(client, at.as_ref()).await?)
                };
                Ok::<_, DashboardError>((summary, options))
            }
            .await;
            match result {
                Ok((summary, None)) => Response::json(StatusCode::OK, &summary.to_json()),
                Ok((summary, Some(options))) => {
                    Response::html(StatusCode::OK, html::page(&summary, &options, &Mode::Live))
                }
                Err(e) => server_error(api, &e),
            }
        }
        "/api/filters" => {
            let result = async {
                let mut session = state.pool.get().await?;
                let client = session.client().await?;
                let at = state.cache.current(client).await?;
                state.cache.options(client, at.as_ref()).await
            }
            .await;
            match result {
                Ok(options) => Response::json(StatusCode::OK, &options.to_json()),
                Err(e) => server_error(api, &e),
            }
        }
        path if path.starts_with("/export/") => export(request, state).await,
        _ => Response::error(
            api,
            StatusCode::NOT_FOUND,
            "no such page; the dashboard is at /",
        ),
    }
}

/// `GET /export/<table>.csv?<filters>`: one of the page's tables as CSV (aggregates only).
async fn export(request: &Request<'_>, state: &State) -> Response {
    let Some(table) = request
        .path
        .strip_prefix("/export/")
        .and_then(|p| p.strip_suffix(".csv"))
    else {
        return Response::error(
            false,
            StatusCode::NOT_FOUND,
            "no such export; expected /export/<table>.csv",
        );
    };
    if !super::tables::ids().any(|id| id == table) {
        return Response::error(
            false,
            StatusCode::NOT_FOUND,
            &format!(
                "no table '{table}' to export; expected one of {}",
                super::tables::ids().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let filters = match Filters::from_query(request.query) {
        Ok(f) => f,
        Err(e) => return Response::error(false, StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let result = async {
        let mut session = state.pool.get().await?;
        let client = session.client().await?;
        let at = state.cache.current(client).await?;
        state.cache.summary(client, at.as_ref(), &filters).await
    }
    .await;
    match result.map(|summary| super::tables::export(&summary, table)) {
        Ok(Some(csv)) => Response {
            status: StatusCode::OK,
            content_type: "text/csv; charset=utf-8",
            body: csv.into_bytes(),
            allow: false,
        },
        Ok(None) => Response::error(false, StatusCode::NOT_FOUND, "no such table"),
        Err(e) => server_error(false, &e),
    }
}

fn server_error(api: bool, e: &DashboardError) -> Response {
    tracing::error!(error = %e, "dashboard query failed");
    // Every session busy is the server's load, not a fault: 503, so that a client may try again.
    let status = match e {
        DashboardError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Response::error(api, status, &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn status_lines_use_the_standard_reasons() {
        assert_eq!(status_line(StatusCode::URI_TOO_LONG), "414 URI Too Long");
        assert_eq!(
            status_line(StatusCode::SERVICE_UNAVAILABLE),
            "503 Service Unavailable"
        );
    }
}
