//! The HTTP server loop: hyper with deadlines, so a client that sends its headers or body a
//! byte at a time cannot hold a connection (and its memory) for minutes; over TLS when vakt
//! has a certificate (`tls_cert`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::StreamExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown` turns true, then lets the requests in
/// flight finish. A client that has not sent a whole request head within
/// `header_timeout` (also an idle kept-alive connection) is disconnected. With `tls`, every
/// connection is HTTPS, and its handshake too must be done within `header_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    // Each connection task holds a receiver; when all are gone, every connection is done.
    let (all_closed, connection_open) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, mostly: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopping(&mut shutdown) => break,
        };
        let service = app
            .clone()
            .map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(Body::new)
            });
        let stop = shutdown.clone();
        let open = connection_open.clone();
        let tls = tls.clone();
        // The handshake runs in the connection's own task: a slow or failed one holds up
        // nobody else, and never the loop.
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, service, header_timeout, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, service, header_timeout, stop).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "no TLS handshake in time"),
                    }
                }
            }
            drop(open);
        });
    }
    drop(connection_open);
    all_closed.closed().await;
}

/// Serves HTTP/1.1 on one connection until it ends, or gracefully once shutdown begins.
async fn serve_connection<S, A>(
    stream: S,
    peer: std::net::SocketAddr,
    service: A,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    A: tower::Service<Request<hyper::body::Incoming>, Response = Response> + Clone + Send + 'static,
    A::Future: Send + 'static,
    A::Error: std::error::Error + Send + Sync + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "HTTP connection ended");
            }
        }
        _ = stopping(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await of a spawned task.
    let _ = shutdown.wait_for(|stop| *stop).await.is_ok();
}

/// A request body that does not arrive whole within `within` ends the request with 408 and
/// the connection with it.
pub async fn body_deadline(within: Duration, req: Request, next: Next) -> Response {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return next.run(req).await;
    }
    let timed_out = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| with_deadline(body, within, timed_out.clone()));
    let resp = next.run(req).await;
    if !timed_out.load(Ordering::Relaxed) {
        return resp;
    }
    let problem = super::error::Problem {
        kind: "about:blank".into(),
        title: "Request timeout".into(),
        status: StatusCode::REQUEST_TIMEOUT.as_u16(),
        detail: format!(
            "the request body did not arrive within {} s",
            within.as_secs()
        ),
        field: None,
    };
    let mut resp = (
        StatusCode::REQUEST_TIMEOUT,
        [(header::CONTENT_TYPE, "application/problem+json")],
        axum::Json(problem),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn with_deadline(body: Body, within: Duration, timed_out: Arc<AtomicBool>) -> Body {
    let deadline = tokio::time::Instant::now() + within;
    let chunks = body.into_data_stream();
    Body::from_stream(futures_util::stream::unfold(Some(chunks), move |chunks| {
        let timed_out = timed_out.clone();
        async move {
            let mut chunks = chunks?;
            match tokio::time::timeout_at(deadline, chunks.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(std::io::Error::other), Some(chunks))),
                Ok(None) => None,
                Err(_) => {
                    timed_out.store(true, Ordering::Relaxed);
                    let late = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body did not arrive in time",
                    );
                    Some((Err(late), None))
                }
            }
        }
    }))
}
