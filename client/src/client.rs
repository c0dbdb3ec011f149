//! The shared core of the client: configuration, connections and metadata.
//!
//! A [`Client`] is cheap to clone; the producer, consumer and admin client built from
//! one share its connections and metadata cache. It also runs the periodic metadata
//! refresh, which stops when the last clone is dropped.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use fjord_protocol::messages::{Message, MetadataResponse};
use fjord_protocol::{ApiKey, ErrorCode};
use tokio::task::JoinHandle;

use crate::config::ClientConfig;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::metadata::{Leader, Metadata, Snapshot};
use crate::pool::ConnectionPool;
use crate::topic_partition::TopicPartition;

/// A connection to a Fjord cluster, shared by producers, consumers and admin clients.
///
/// ```no_run
/// use fjord_client::{Client, ClientConfig};
///
/// # async fn example() -> fjord_client::Result<()> {
/// let client = Client::connect(ClientConfig::new(["127.0.0.1:9192"])).await?;
/// # drop(client);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    pool: ConnectionPool,
    metadata: Metadata,
    refresher: OnceLock<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(refresher) = self.refresher.get() {
            refresher.abort();
        }
    }
}

impl Client {
    /// Validates `config`, reaches one of the bootstrap brokers and loads the list of
    /// brokers. Fails with [`Error::Connect`] when no bootstrap broker answers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        config.validate()?;
        let period = Duration::from_millis(config.metadata_refresh_ms);
        let inner = Arc::new(Inner {
            pool: ConnectionPool::new(config.clone()),
            config,
            metadata: Metadata::new(),
            refresher: OnceLock::new(),
        });
        inner
            .metadata
            .fetch(&inner.pool, &inner.config, Some(Vec::new()))
            .await?;
        let refresher = tokio::spawn(refresh_periodically(Arc::downgrade(&inner), period));
        inner
            .refresher
            .set(refresher)
            .expect("the refresher is started once");
        Ok(Client { inner })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.metadata.snapshot()
    }

    /// Refreshes the given topics (coalesced with concurrent refreshes).
    pub(crate) async fn refresh_metadata(&self, topics: Vec<String>) -> Result<()> {
        self.inner
            .metadata
            .refresh(&self.inner.pool, &self.inner.config, topics)
            .await
    }

    /// Refreshes after a failed request; a failure to refresh is only logged, since
    /// the caller retries (and refreshes again) anyway.
    pub(crate) async fn refresh_metadata_quietly(&self, topics: Vec<String>) {
        if let Err(error) = self.refresh_metadata(topics).await {
            tracing::debug!(%error, "metadata refresh failed");
        }
    }

    /// Asks the cluster for `topics` (`None` = all) and updates the cache.
    pub(crate) async fn fetch_metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse> {
        self.inner
            .metadata
            .fetch(&self.inner.pool, &self.inner.config, topics)
            .await
    }

    /// The number of partitions of `topic`, asking the cluster when the cache does not
    /// know the topic.
    pub(crate) async fn partition_count(&self, topic: &str) -> Result<usize> {
        if let Some(count) = self.snapshot().partition_count(topic) {
            return Ok(count);
        }
        let response = self.fetch_metadata(Some(vec![topic.to_owned()])).await?;
        let entry = response
            .topics
            .iter()
            .find(|entry| entry.name == topic)
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_owned(),
            })?;
        match entry.error_code {
            ErrorCode::None => Ok(entry.partitions.len()),
            ErrorCode::UnknownTopicOrPartition => Err(Error::UnknownTopic {
                topic: topic.to_owned(),
            }),
            code => Err(Error::broker(format!("metadata of topic '{topic}'"), code)),
        }
    }

    /// The leader of a partition, asking the cluster when the cache does not know it.
    pub(crate) async fn leader(&self, topic_partition: &TopicPartition) -> Result<Leader> {
        if let Ok(leader) = self.snapshot().leader(topic_partition) {
            return Ok(leader);
        }
        self.refresh_metadata(vec![topic_partition.topic.clone()])
            .await?;
        self.snapshot()
            .leader(topic_partition)
            .map_err(|failure| failure.into_error(topic_partition))
    }

    /// The connection to `address`, opened if needed.
    pub(crate) async fn connection(&self, address: &str) -> Result<Connection> {
        self.inner.pool.get(address).await
    }

    /// Sends a request to the broker at `address` and waits for its response.
    pub(crate) async fn request<Req: Message, Resp: Message>(
        &self,
        address: &str,
        api: ApiKey,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp> {
        self.connection(address)
            .await?
            .request(api, request, timeout)
            .await
    }

    /// Sends an administrative request to the controller, or to any broker when the
    /// controller is unknown, trying the next broker when one cannot be reached.
    pub(crate) async fn request_to_controller<Req: Message, Resp: Message>(
        &self,
        api: ApiKey,
        request: &Req,
    ) -> Result<Resp> {
        let snapshot = self.snapshot();
        let mut addresses: Vec<String> = Vec::new();
        let controller = snapshot.brokers.get(&snapshot.controller_id);
        for address in controller
            .into_iter()
            .chain(snapshot.brokers.values())
            .chain(&self.inner.config.bootstrap)
        {
            if !addresses.contains(address) {
                addresses.push(address.clone());
            }
        }
        let mut last_error = None;
        for address in addresses {
            match self.connection(&address).await {
                Ok(connection) => {
                    // Once a broker is reached, its answer (or timeout) is final: an
                    // administrative request must not be sent twice.
                    return connection
                        .request(api, request, self.inner.config.request_timeout())
                        .await;
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Config("no broker address known".into())))
    }
}

/// Refreshes the known topics every `period` while the client exists.
async fn refresh_periodically(client: Weak<Inner>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = client.upgrade() else {
            return;
        };
        let topics = inner.metadata.known_topics();
        if let Err(error) = inner
            .metadata
            .refresh(&inner.pool, &inner.config, topics)
            .await
        {
            tracing::debug!(%error, "periodic metadata refresh failed");
        }
    }
}
