//! The HTTP endpoint: `/metrics`, `/livez`, `/readyz`, on a thread of its own.
//!
//! Requests are served one at a time (a scrape takes well under a millisecond to encode); nothing
//! here is ever waited on by the copy loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tiny_http::{Header, Request, Response, Server};

use super::health::Probe;
use super::Metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `listen` and serves until the process exits. `stop` is the shutdown flag (a stopping
/// instance is not ready).
pub fn start(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
) -> Result<SocketAddr, String> {
    let server = Server::http(listen)
        .map_err(|e| format!("metrics.listen = \"{listen}\": cannot listen: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| format!("metrics.listen = \"{listen}\": not an IP socket"))?;
    std::thread::Builder::new()
        .name("txform-metrics".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                respond(request, &metrics, &stop);
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    log::info!("serving /metrics, /livez and /readyz on http://{bound}");
    Ok(bound)
}

fn respond(request: Request, metrics: &Metrics, stop: &AtomicBool) {
    let path = request
        .url()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string();
    let response = match path.as_str() {
        "/metrics" => scrape(&request, metrics),
        "/livez" => probe(metrics.health.live()),
        "/readyz" => probe(metrics.health.ready(stop.load(Ordering::SeqCst))),
        _ => text(404, "not found: try /metrics, /livez or /readyz\n".into()),
    };
    if let Err(e) = request.respond(response) {
        log::debug!("metrics endpoint: cannot answer {path}: {e}");
    }
}

/// OpenMetrics when the scraper accepts it (Prometheus does), else the same text labelled as the
/// Prometheus text format, which reads it (see ARCHITECTURE.md).
fn scrape(request: &Request, metrics: &Metrics) -> Response<std::io::Cursor<Vec<u8>>> {
    let openmetrics = request.headers().iter().any(|h| {
        h.field.equiv("Accept") && h.value.as_str().contains("application/openmetrics-text")
    });
    match metrics.encode() {
        Ok(body) => with_type(
            Response::from_string(body),
            if openmetrics {
                OPENMETRICS
            } else {
                PROMETHEUS_TEXT
            },
        ),
        Err(e) => text(500, format!("cannot encode the metrics: {e}\n")),
    }
}

fn probe(result: Probe) -> Response<std::io::Cursor<Vec<u8>>> {
    match result {
        Ok(()) => text(200, "ok\n".into()),
        Err(why) => text(503, format!("{why}\n")),
    }
}

fn text(status: u16, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    with_type(Response::from_string(body), "text/plain; charset=utf-8").with_status_code(status)
}

fn with_type(
    response: Response<std::io::Cursor<Vec<u8>>>,
    content_type: &str,
) -> Response<std::io::Cursor<Vec<u8>>> {
    match Header::from_bytes("Content-Type", content_type) {
        Ok(header) => response.with_header(header),
        Err(()) => response,
    }
}
