//! Three brokers that are voters of one metadata quorum, in the test's process, over
//! real TCP on 127.0.0.1, and the waits the tests of such a cluster need.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_broker::config::BrokerConfig;
use fjord_broker::metadata::MetadataImage;
use fjord_broker::{Broker, BrokerHandle, Listeners};
use tokio::net::TcpListener;

/// Generous: elections take seconds, and the machine may be loaded.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub async fn wait_until<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let started = Instant::now();
    while !condition().await {
        assert!(
            started.elapsed() < PATIENCE,
            "not within {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{what}: {:?}", started.elapsed());
}

pub fn config(data_dir: &Path, node_id: i32, voters: &str) -> BrokerConfig {
    let mut config = BrokerConfig::for_tests(data_dir);
    config.node_id = node_id;
    config.controller_quorum_voters = voters.to_owned();
    config.broker_heartbeat_interval_ms = 250;
    config.broker_session_timeout_ms = 2_000;
    config.metadata_propose_timeout_ms = PROPOSE_TIMEOUT.as_millis() as u64;
    config
}

/// Shorter than the default 10 s: the tests wait for it without a majority.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(4);

pub async fn ephemeral() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Binds `address` again (a restarted voter keeps its address); another test may hold
/// the port for a moment, so it retries for a while.
pub async fn rebind(address: SocketAddr) -> TcpListener {
    let started = Instant::now();
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(error) => {
                assert!(
                    started.elapsed() < PATIENCE,
                    "cannot bind {address} again: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Every broker of `brokers` registered and unfenced, and every one of them naming
/// the same active controller, in `image`.
pub fn all_unfenced(image: &MetadataImage, brokers: &[i32]) -> bool {
    brokers.iter().all(|node_id| {
        image
            .brokers
            .get(node_id)
            .is_some_and(|broker| !broker.fenced)
    }) && image.controller_id != -1
}

pub struct Cluster {
    pub _dirs: Vec<tempfile::TempDir>,
    pub data_dirs: Vec<std::path::PathBuf>,
    pub voters: String,
    pub internal: Vec<SocketAddr>,
    pub brokers: Vec<Option<BrokerHandle>>,
}

impl Cluster {
    /// Starts three voters at once (each waits for the others to elect a leader).
    pub async fn start() -> Self {
        Self::start_inner(false).await
    }

    /// [`Self::start`], each broker with an external client listener too, advertised
    /// at the address it bound.
    pub async fn start_with_external_listeners() -> Self {
        Self::start_inner(true).await
    }

    async fn start_inner(external_listeners: bool) -> Self {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let data_dirs: Vec<_> = dirs.iter().map(|dir| dir.path().join("data")).collect();
        let mut internal_listeners = Vec::new();
        for _ in 0..3 {
            internal_listeners.push(ephemeral().await);
        }
        let internal: Vec<SocketAddr> = internal_listeners
            .iter()
            .map(|listener| listener.local_addr().unwrap())
            .collect();
        let voters = (1..=3)
            .zip(&internal)
            .map(|(node_id, address)| format!("{node_id}@{address}"))
            .collect::<Vec<_>>()
            .join(",");
        let started = Instant::now();
        let mut starting = Vec::new();
        for ((node_id, data_dir), internal) in (1..=3).zip(&data_dirs).zip(internal_listeners) {
            let mut config = config(data_dir, node_id, &voters);
            let external = if external_listeners {
                let listener = ephemeral().await;
                let address = listener.local_addr().unwrap().to_string();
                config.external_listen = address.clone();
                config.external_advertised = address;
                Some(listener)
            } else {
                None
            };
            let listeners = Listeners {
                client: ephemeral().await,
                internal,
                http: ephemeral().await,
                external,
            };
            starting.push(tokio::spawn(Broker::start_on(config, listeners)));
        }
        let mut brokers = Vec::new();
        for start in starting {
            brokers.push(Some(start.await.unwrap().expect("a voter starts")));
        }
        println!("three voters started in {:?}", started.elapsed());
        Self {
            _dirs: dirs,
            data_dirs,
            voters,
            internal,
            brokers,
        }
    }

    pub fn broker(&self, node_id: i32) -> &BrokerHandle {
        self.brokers[(node_id - 1) as usize]
            .as_ref()
            .expect("the broker runs")
    }

    pub fn image(&self, node_id: i32) -> Arc<MetadataImage> {
        self.broker(node_id).broker().metadata()
    }

    pub fn running(&self) -> Vec<i32> {
        (1..=3)
            .filter(|node_id| self.brokers[(*node_id - 1) as usize].is_some())
            .collect()
    }

    /// Waits until every running broker sees all three brokers unfenced and the same
    /// controller; returns the controller.
    pub async fn settled(&self) -> i32 {
        wait_until(
            "every broker sees three unfenced brokers and one controller",
            || {
                let images: Vec<_> = self
                    .running()
                    .into_iter()
                    .map(|node_id| self.image(node_id))
                    .collect();
                let agreed = images.iter().all(|image| all_unfenced(image, &[1, 2, 3]))
                    && images
                        .iter()
                        .all(|image| image.controller_id == images[0].controller_id);
                async move { agreed }
            },
        )
        .await;
        self.image(self.running()[0]).controller_id
    }

    pub async fn stop(&mut self, node_id: i32) {
        let broker = self.brokers[(node_id - 1) as usize]
            .take()
            .expect("the broker runs");
        broker.shutdown().await.unwrap();
    }

    pub async fn restart(&mut self, node_id: i32) {
        let index = (node_id - 1) as usize;
        let config = config(&self.data_dirs[index], node_id, &self.voters);
        let listeners = Listeners {
            client: ephemeral().await,
            internal: rebind(self.internal[index]).await,
            http: ephemeral().await,
            external: None,
        };
        let started = Instant::now();
        let broker = Broker::start_on(config, listeners).await.unwrap();
        println!("broker {node_id} restarted in {:?}", started.elapsed());
        self.brokers[index] = Some(broker);
    }

    pub async fn shutdown(mut self) {
        for node_id in self.running() {
            self.stop(node_id).await;
        }
    }
}
