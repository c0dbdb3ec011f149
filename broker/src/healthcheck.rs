//! `fjord-broker healthcheck`: asks a running broker's `GET /readyz` and turns the
//! answer into an exit code (0 ready, 1 anything else, with a one-line reason on
//! stderr), for container health checks.
//!
//! A `FROM scratch` image has no curl, so the binary checks itself. One GET with
//! `Connection: close` and the status line of the answer is all a probe needs, so this
//! is a plain blocking TCP exchange (no async runtime, no HTTP client crate), bounded as
//! a whole by a timeout so that a frozen broker makes the check fail, not hang.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fjord_broker::config::{BrokerConfig, ConfigOverrides};

/// The bytes of an answer read at most: the status line and a short error body fit
/// easily; a broker that sends more is not answering a probe.
const RESPONSE_BYTES_MAX: usize = 16 * 1024;

/// Flags of the `healthcheck` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// HOST:PORT of the broker's HTTP listener. Default: `http_listen` from the same
    /// file, environment and flags the broker reads, with 0.0.0.0 (or ::) asked on
    /// 127.0.0.1 (or ::1).
    #[arg(long, value_name = "HOST:PORT")]
    pub http: Option<String>,
    /// Longest the whole check may take (connect, request, answer).
    #[arg(long, default_value_t = 3_000)]
    pub timeout_ms: u64,
}

/// Why the broker is not healthy (or could not be asked).
#[derive(Debug, thiserror::Error)]
pub enum Unhealthy {
    #[error("invalid configuration: {0}")]
    Config(#[from] fjord_broker::config::ConfigError),
    #[error("cannot resolve {address}: {source}")]
    Resolve {
        address: String,
        source: std::io::Error,
    },
    #[error("{address} resolves to no address")]
    NoAddress { address: String },
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("no answer from {address} within {timeout:?}")]
    TimedOut {
        address: SocketAddr,
        timeout: Duration,
    },
    #[error("asking {address} failed: {source}")]
    Exchange {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("{address} did not answer with an HTTP status line")]
    NotHttp { address: SocketAddr },
    #[error("{address} answered {status}: {reason}")]
    NotReady {
        address: SocketAddr,
        status: u16,
        reason: String,
    },
}

/// Runs the subcommand: the address from `args.http`, else from the broker's own
/// settings (`config_file`, then `overrides`); prints one line and returns the exit code.
pub fn run(
    args: &HealthcheckArgs,
    config_file: Option<&Path>,
    overrides: ConfigOverrides,
) -> ExitCode {
    let timeout = Duration::from_millis(args.timeout_ms);
    let outcome = addresses_to_ask(args, config_file, overrides)
        .and_then(|addresses| check(&addresses, timeout));
    match outcome {
        Ok(address) => {
            println!("ready: {address}");
            ExitCode::SUCCESS
        }
        Err(unhealthy) => {
            eprintln!("unhealthy: {unhealthy}");
            ExitCode::FAILURE
        }
    }
}

fn addresses_to_ask(
    args: &HealthcheckArgs,
    config_file: Option<&Path>,
    overrides: ConfigOverrides,
) -> Result<Vec<SocketAddr>, Unhealthy> {
    match &args.http {
        Some(address) => resolve(address),
        None => {
            let config = BrokerConfig::load(config_file, overrides)?;
            Ok(vec![probe_address(config.http_listen)])
        }
    }
}

/// The address to ask for a broker listening on `http_listen`: a wildcard listener is
/// reached on the loopback address of its family.
pub fn probe_address(http_listen: SocketAddr) -> SocketAddr {
    let ip = match http_listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, http_listen.port())
}

/// Resolves `HOST:PORT` (a name or an address) to the addresses to try, in order.
pub fn resolve(address: &str) -> Result<Vec<SocketAddr>, Unhealthy> {
    let addresses: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|source| Unhealthy::Resolve {
            address: address.to_owned(),
            source,
        })?
        .collect();
    if addresses.is_empty() {
        return Err(Unhealthy::NoAddress {
            address: address.to_owned(),
        });
    }
    Ok(addresses)
}

/// Asks `GET /readyz` on the first of `addresses` that accepts a connection; `Ok` with
/// the address that answered 200, else why not. Everything together takes at most
/// `timeout` (plus a name lookup, done before).
pub fn check(addresses: &[SocketAddr], timeout: Duration) -> Result<SocketAddr, Unhealthy> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    for &address in addresses {
        match ask_readyz(address, deadline, timeout) {
            Ok(()) => return Ok(address),
            // Another address of the same name may be the one the broker listens on.
            Err(error @ Unhealthy::Connect { .. }) => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.expect("resolve returns at least one address"))
}

fn ask_readyz(address: SocketAddr, deadline: Instant, timeout: Duration) -> Result<(), Unhealthy> {
    let timed_out = || Unhealthy::TimedOut { address, timeout };
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(timed_out)
    };
    let mut stream = TcpStream::connect_timeout(&address, remaining()?).map_err(|source| {
        match source.kind() {
            std::io::ErrorKind::TimedOut => timed_out(),
            _ => Unhealthy::Connect { address, source },
        }
    })?;
    let exchange_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => timed_out(),
        _ => Unhealthy::Exchange { address, source },
    };
    let request = format!("GET /readyz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .set_write_timeout(Some(remaining()?))
        .map_err(exchange_error)?;
    stream
        .write_all(request.as_bytes())
        .map_err(exchange_error)?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    // Until the broker closes (it was asked to), the limit, or the deadline; an answer
    // whose status line has arrived is judged even if the rest is late.
    while response.len() < RESPONSE_BYTES_MAX {
        let read = remaining()
            .and_then(|left| stream.set_read_timeout(Some(left)).map_err(exchange_error))
            .and_then(|()| stream.read(&mut chunk).map_err(exchange_error));
        match read {
            Ok(0) => break,
            Ok(count) => response.extend_from_slice(&chunk[..count]),
            Err(_) if status_line(&response).is_some() => break,
            Err(error) => return Err(error),
        }
    }
    let status = status_line(&response).ok_or(Unhealthy::NotHttp { address })?;
    if status == 200 {
        return Ok(());
    }
    Err(Unhealthy::NotReady {
        address,
        status,
        reason: reason(&response),
    })
}

/// The status code of a complete HTTP/1.x status line at the start of `response`.
fn status_line(response: &[u8]) -> Option<u16> {
    let end = response.windows(2).position(|pair| pair == b"\r\n")?;
    let line = std::str::from_utf8(&response[..end]).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// A one-line reason from an answer that is not 200: the broker's JSON error message
/// (`{"error":{"code":…,"message":…}}`) when the body is one, else the body's first line.
fn reason(response: &[u8]) -> String {
    let body = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|end| &response[end + 4..])
        .unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value["error"]["message"].as_str().map(str::to_owned));
    let text = message.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let line = text.lines().next().unwrap_or_default().trim();
    if line.is_empty() {
        "no reason given".to_owned()
    } else {
        line.chars().take(200).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wildcard listener is asked on loopback; a specific address is asked as is.
    #[test]
    fn wildcard_listen_addresses_are_asked_on_loopback() {
        let cases = [
            ("0.0.0.0:9193", "127.0.0.1:9193"),
            ("[::]:9193", "[::1]:9193"),
            ("10.1.2.3:80", "10.1.2.3:80"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ];
        for (listen, asked) in cases {
            let listen: SocketAddr = listen.parse().unwrap();
            assert_eq!(probe_address(listen).to_string(), asked, "{listen}");
        }
    }

    /// Status lines are read only when complete and HTTP/1.x with a three-digit code.
    #[test]
    fn status_lines_are_parsed_strictly() {
        assert_eq!(status_line(b"HTTP/1.1 200 OK\r\n\r\n"), Some(200));
        assert_eq!(
            status_line(b"HTTP/1.0 503 Service Unavailable\r\n"),
            Some(503)
        );
        assert_eq!(status_line(b"HTTP/1.1 200 OK"), None, "incomplete");
        assert_eq!(status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_line(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(status_line(b""), None);
    }

    /// The reason is the broker's error message when the body is its JSON error, else
    /// the body's first line, and never empty.
    #[test]
    fn reasons_are_one_line() {
        let json = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 60\r\n\r\n\
            {\"error\":{\"code\":\"not_ready\",\"message\":\"not ready: recovering\"}}";
        assert_eq!(reason(json), "not ready: recovering");
        let text = b"HTTP/1.1 502 Bad Gateway\r\n\r\nupstream gone\nmore";
        assert_eq!(reason(text), "upstream gone");
        assert_eq!(reason(b"HTTP/1.1 500 Oops\r\n\r\n"), "no reason given");
    }
}
