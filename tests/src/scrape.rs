//! Reading txform's HTTP endpoint: probes, and scrapes parsed with a Prometheus text parser.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use prometheus_parse::{Scrape, Value};

use crate::process::Txform;

/// One HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

/// `GET path` over HTTP/1.0 (the connection closes after the answer), with an `Accept` header.
pub fn get(address: SocketAddr, path: &str, accept: &str) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\nAccept: {accept}\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no end of headers in {raw:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let content_type = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    Ok(Answer {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// The address the instance logged for its endpoint (`listen = "127.0.0.1:0"`).
pub fn metrics_address(txform: &mut Txform, timeout: Duration) -> SocketAddr {
    let line = txform.wait_for_log("serving /metrics", timeout);
    let address = line
        .rsplit("http://")
        .next()
        .map(str::trim)
        .unwrap_or_default();
    address
        .parse()
        .unwrap_or_else(|e| panic!("no address in {line:?}: {e}"))
}

/// A parsed scrape: samples by name and labels (`name{k="v",...}`, labels sorted).
#[derive(Debug)]
pub struct Metrics(pub BTreeMap<String, f64>);

impl Metrics {
    /// Scrapes `/metrics` and parses it as the Prometheus text format.
    pub fn scrape(address: SocketAddr) -> Metrics {
        let answer = get(address, "/metrics", "text/plain").expect("scrape /metrics");
        assert_eq!(answer.status, 200, "scrape: {answer:?}");
        Metrics::parse(&answer.body)
    }

    pub fn parse(text: &str) -> Metrics {
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .expect("a scrape in the Prometheus text format");
        let mut samples = BTreeMap::new();
        for sample in scrape.samples {
            let mut labels: Vec<(String, String)> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let base = if labels.is_empty() {
                sample.metric.clone()
            } else {
                let inner: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                format!("{}{{{}}}", sample.metric, inner.join(","))
            };
            match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    samples.insert(base, v);
                }
                Value::Histogram(buckets) => {
                    // `_count` and `_sum` come as their own untyped samples; the `+Inf` bucket is
                    // the count too.
                    if let Some(last) = buckets.last() {
                        samples.insert(format!("{base}:inf_bucket"), last.count);
                    }
                }
                Value::Summary(_) => {}
            }
        }
        Metrics(samples)
    }

    /// The sample `key` (`name` or `name{k="v"}` with labels sorted); panics when absent.
    pub fn get(&self, key: &str) -> f64 {
        match self.0.get(key) {
            Some(v) => *v,
            None => panic!("no sample {key} in the scrape: {:#?}", self.0.keys()),
        }
    }

    pub fn try_get(&self, key: &str) -> Option<f64> {
        self.0.get(key).copied()
    }
}
