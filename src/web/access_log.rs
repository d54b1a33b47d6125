//! The HTTP access log: one line a request, when its answer has been sent, at target
//! `vakt::access`.
//!
//! It holds what operations needs to see load, errors and slowness per endpoint: the method,
//! the route as written in the code (`/api/alerts/{id}`, never the path asked for), the
//! status, the time to the last byte and the bytes sent. Nothing else: no query string (it
//! carries the reasons officers give for revealing a protected person, and search terms),
//! no body, no user name, no id of a person, case or alert (they are in the path, which is
//! why the route is logged instead), and no client address (the duty officers' workstations;
//! abuse is recorded where it is fought, in the security events and the login throttle).
//! Who did what to which case is the audit log's job, which is access-controlled, chained and
//! kept; an access log is neither.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

/// The layer: `.layer(axum::middleware::from_fn(access_log))`, outermost, so that the
/// status and bytes are those the client gets. Layered on a `Router`, it runs after
/// routing, so the matched route is known.
pub async fn access_log(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let resp = next.run(req).await;
    let status = resp.status();
    resp.map(|inner| {
        Body::new(Logged {
            inner,
            line: Line {
                method,
                route,
                status,
                started,
                bytes: 0,
            },
        })
    })
}

struct Line {
    method: Method,
    route: Option<String>,
    status: StatusCode,
    started: Instant,
    bytes: u64,
}

impl Line {
    fn write(&self) {
        let route = self.route.as_deref().unwrap_or("(no route)");
        let method = self.method.as_str();
        let status = self.status.as_u16();
        // Milliseconds to the microsecond.
        let duration_ms = (self.started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let bytes = self.bytes;
        // Probes and scrapes come every few seconds; they would drown everything else.
        if matches!(route, "/healthz" | "/readyz" | "/metrics") && status < 500 {
            tracing::debug!(target: "vakt::access", method, route, status, duration_ms, bytes, "request");
        } else {
            tracing::info!(target: "vakt::access", method, route, status, duration_ms, bytes, "request");
        }
    }
}

/// The response body, counted as it is sent; the line is written when it is done (for a
/// live stream: when the stream ends), or when the client went away before.
struct Logged {
    inner: Body,
    line: Line,
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &poll {
            if let Some(data) = frame.data_ref() {
                this.line.bytes += data.len() as u64;
            }
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.line.write();
    }
}
