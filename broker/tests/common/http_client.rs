//! A minimal HTTP/1.1 client over a `TcpStream` (one request per connection,
//! `Connection: close`), so that tests control every byte and pull in no HTTP client
//! library; and a parser of the Prometheus text exposition.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------
// A minimal HTTP/1.1 client.

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("the body is UTF-8")
    }

    pub fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }

    /// Asserts the status and the error shape `{"error": {"code", "message"}}` with
    /// nothing else in it; returns the message.
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        let object = body.as_object().expect("an object");
        assert_eq!(object.len(), 1, "{body}");
        let error = object["error"].as_object().expect("error is an object");
        assert_eq!(error.len(), 2, "{body}");
        assert_eq!(error["code"], code, "{body}");
        let message = error["message"].as_str().expect("message is a string");
        assert!(!message.is_empty());
        message.to_owned()
    }
}

/// Sends one request on a fresh connection and reads the response to the end.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &[u8])>,
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((content_type, bytes)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.map_or(&[][..], |(_, bytes)| bytes));
    stream.write_all(&request).await.expect("write the request");
    let mut raw = Vec::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut raw))
        .await
        .expect("no response in time")
        .expect("read the response");
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).expect("the head is text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (key, value) = line.split_once(':').expect("a header line");
            (key.trim().to_lowercase(), value.trim().to_owned())
        })
        .collect();
    let response = HttpResponse {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    assert_ne!(
        response.header("transfer-encoding"),
        Some("chunked"),
        "this client does not decode chunked bodies"
    );
    if let Some(length) = response.header("content-length") {
        assert_eq!(length.parse::<usize>().unwrap(), response.body.len());
    }
    response
}

pub async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, "GET", path, None).await
}

pub async fn send_json(addr: SocketAddr, method: &str, path: &str, body: &Value) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap();
    http(addr, method, path, Some(("application/json", &bytes))).await
}

// ---------------------------------------------------------------------------------
// Metrics.

/// A parsed Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub help: HashMap<String, String>,
    pub types: HashMap<String, String>,
    /// (name, labels as written, value)
    pub samples: Vec<(String, String, f64)>,
}

impl Exposition {
    pub fn parse(text: &str) -> Self {
        let mut exposition = Self::default();
        for line in text.lines().filter(|line| !line.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                exposition.help.insert(name.to_owned(), help.to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(
                    exposition
                        .types
                        .insert(name.to_owned(), kind.to_owned())
                        .is_none(),
                    "{name} has two TYPE lines"
                );
            } else {
                let (series, value) = line.rsplit_once(' ').unwrap();
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                exposition.samples.push((
                    name.to_owned(),
                    labels.to_owned(),
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("bad value in {line}")),
                ));
            }
        }
        exposition
    }

    /// The value of the one series of `name` whose labels contain every `label`.
    pub fn value(&self, name: &str, labels: &[&str]) -> Option<f64> {
        let mut found = self.samples.iter().filter(|(sample, written, _)| {
            sample == name && labels.iter().all(|label| written.contains(label))
        });
        let value = found.next().map(|(_, _, value)| *value);
        assert!(
            found.next().is_none(),
            "{name} {labels:?} matches several series"
        );
        value
    }

    pub fn has_series(&self, name: &str, label: &str) -> bool {
        self.samples
            .iter()
            .any(|(sample, labels, _)| sample == name && labels.contains(label))
    }
}

pub async fn scrape(addr: SocketAddr) -> Exposition {
    let response = get(addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    Exposition::parse(&response.text())
}
