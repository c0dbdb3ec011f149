//! The listener and the peer client together over real TCP on 127.0.0.1: answers reach
//! their callers, calls share one connection, a silent peer times a call out without
//! spoiling the next one, and a lost peer is reconnected to.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::frame::{Frame, RESPONSE_BIT};
use super::*;

const ECHO: u8 = 0x20;
/// Answered only after a long pause.
const SLOW_ECHO: u8 = 0x21;
/// Answered only once the test opens the service's gate.
const GATED_ECHO: u8 = 0x22;
const PATIENCE: Duration = Duration::from_secs(30);

/// Echoes bodies back; counts the requests it sees.
#[derive(Debug)]
struct Echo {
    requests: AtomicUsize,
    gate: tokio::sync::Semaphore,
}

impl Default for Echo {
    fn default() -> Self {
        Self {
            requests: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        }
    }
}

impl InternalService for Echo {
    async fn handle(&self, request: Frame) -> Result<Frame, ServiceError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match request.kind {
            ECHO => {}
            SLOW_ECHO => tokio::time::sleep(Duration::from_secs(2)).await,
            GATED_ECHO => drop(self.gate.acquire().await),
            kind => return Err(ServiceError::UnknownKind { kind }),
        }
        Ok(Frame {
            kind: request.kind | RESPONSE_BIT,
            request_id: request.request_id,
            body: request.body,
        })
    }
}

/// A listener on a port of its own, and a duplicate of its socket that keeps the port
/// bound while a test restarts the listener.
fn bound() -> (std::net::TcpListener, String) {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let address = socket.local_addr().unwrap().to_string();
    (socket, address)
}

fn serve(socket: &std::net::TcpListener, service: Arc<Echo>) -> RunningListener {
    let listener = tokio::net::TcpListener::from_std(socket.try_clone().unwrap()).unwrap();
    InternalListener::from_listener(listener)
        .serve(service)
        .unwrap()
}

/// Calls from many tasks at once each get the answer to their own request, over one
/// connection.
#[tokio::test]
async fn concurrent_calls_share_one_connection_and_get_their_own_answers() {
    let (socket, address) = bound();
    let running = serve(&socket, Arc::new(Echo::default()));
    let peer = Arc::new(PeerClient::new(address, Duration::from_secs(5)));
    let calls = (0..20).map(|number| {
        let peer = peer.clone();
        tokio::spawn(async move {
            let body = format!("call {number}").into_bytes();
            let answer = peer.call(ECHO, body.clone(), PATIENCE).await.unwrap();
            assert_eq!(answer, body);
        })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap();
    }
    assert_eq!(peer.connections_opened(), 1);
    running.shutdown().await;
}

/// Requests of one connection are answered as each is ready: a request held up (as a
/// metadata change waiting for the quorum is) does not hold up the ones behind it.
#[tokio::test]
async fn a_held_up_request_does_not_hold_up_the_next_on_its_connection() {
    let (socket, address) = bound();
    let service = Arc::new(Echo::default());
    let running = serve(&socket, service.clone());
    let peer = Arc::new(PeerClient::new(address, Duration::from_secs(5)));
    let held = {
        let peer = peer.clone();
        tokio::spawn(async move { peer.call(GATED_ECHO, b"held".to_vec(), PATIENCE).await })
    };
    for number in 0..3 {
        let body = format!("quick {number}").into_bytes();
        let answer = peer.call(ECHO, body.clone(), PATIENCE).await;
        assert_eq!(answer, Ok(body), "a quick call waited behind the held one");
    }
    assert!(!held.is_finished());
    service.gate.add_permits(1);
    assert_eq!(held.await.unwrap().unwrap(), b"held");
    assert_eq!(peer.connections_opened(), 1);
    running.shutdown().await;
}

/// A call whose answer is late fails with a timeout; the late answer is dropped when it
/// comes, and the next call on the same connection gets its own answer.
#[tokio::test]
async fn a_late_answer_times_the_call_out_and_spoils_nothing() {
    let (socket, address) = bound();
    let running = serve(&socket, Arc::new(Echo::default()));
    let peer = PeerClient::new(address.clone(), Duration::from_secs(5));
    let timeout = Duration::from_millis(200);
    let result = peer.call(SLOW_ECHO, b"slow".to_vec(), timeout).await;
    assert_eq!(result, Err(CallError::TimedOut { address, timeout }));
    let answer = peer.call(ECHO, b"next".to_vec(), PATIENCE).await.unwrap();
    assert_eq!(answer, b"next");
    running.shutdown().await;
}

/// A request the service refuses closes the connection: the caller learns at once, and
/// its next call connects again.
#[tokio::test]
async fn a_refused_request_fails_the_call_and_the_next_one_reconnects() {
    let (socket, address) = bound();
    let service = Arc::new(Echo::default());
    let running = serve(&socket, service.clone());
    let peer = PeerClient::new(address, Duration::from_secs(5));
    let result = peer.call(0x7e, b"?".to_vec(), PATIENCE).await;
    assert!(
        matches!(result, Err(CallError::Disconnected { .. })),
        "{result:?}"
    );
    let answer = peer.call(ECHO, b"again".to_vec(), PATIENCE).await.unwrap();
    assert_eq!(answer, b"again");
    assert_eq!(peer.connections_opened(), 2);
    assert_eq!(service.requests.load(Ordering::Relaxed), 2);
    running.shutdown().await;
}

/// Calls fail while the peer's listener is stopped and succeed once it serves again.
#[tokio::test]
async fn calls_resume_when_a_stopped_peer_comes_back() {
    let (socket, address) = bound();
    let running = serve(&socket, Arc::new(Echo::default()));
    let peer = PeerClient::new(address, Duration::from_secs(5));
    assert_eq!(
        peer.call(ECHO, b"1".to_vec(), PATIENCE).await.unwrap(),
        b"1"
    );
    running.shutdown().await;
    // The port stays bound (the test holds the socket) but nobody accepts: the open
    // connection was closed, and a new one is never answered.
    let result = peer
        .call(ECHO, b"2".to_vec(), Duration::from_millis(300))
        .await;
    assert!(result.is_err(), "{result:?}");
    let running = serve(&socket, Arc::new(Echo::default()));
    let answer = tokio::time::timeout(PATIENCE, async {
        loop {
            match peer.call(ECHO, b"3".to_vec(), Duration::from_secs(1)).await {
                Ok(answer) => break answer,
                Err(error) => println!("not yet: {error}"),
            }
        }
    })
    .await
    .expect("the peer came back but calls still fail");
    assert_eq!(answer, b"3");
    running.shutdown().await;
}

/// A refused connection is `Unreachable` (openraft backs off), not a lost connection.
#[tokio::test]
async fn a_peer_nobody_listens_on_is_unreachable() {
    // Bound but not listening: connecting is refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = socket.local_addr().unwrap().to_string();
    let peer = PeerClient::new(address, Duration::from_secs(5));
    let result = peer.call(ECHO, b"x".to_vec(), PATIENCE).await;
    assert!(
        matches!(result, Err(CallError::Unreachable { .. })),
        "{result:?}"
    );
}
