//! The optional TCP listener for a Prometheus on the node
//! (`podnetd --metrics-listen ADDR`): `GET /metrics` and nothing else, so
//! what the network can reach reads counters and never changes anything.
//! Off by default; the socket stays the API.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::api::{Backend, METRICS_CONTENT_TYPE};

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// How long one connection may stay open (a scrape takes milliseconds).
const CONNECTION_TIME: Duration = Duration::from_secs(10);

fn answer<B: Backend>(req: &Request<hyper::body::Incoming>, backend: &B) -> Response<Full<Bytes>> {
    let (status, body, kind) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, backend.metrics(), METRICS_CONTENT_TYPE),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET\n".into(),
            "text/plain",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "this listener serves GET /metrics only\n".into(),
            "text/plain",
        ),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve_metrics<B: Backend>(listener: TcpListener, backend: Arc<B>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // A peer gone before accept, or out of descriptors: pause
                // so a broken listener does not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let backend = backend.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let r = answer(&req, &*backend);
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIME, conn).await;
            drop(permit);
        });
    }
}
