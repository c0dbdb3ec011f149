//! Migration of a data directory written by the pre-Raft release, whose metadata is the
//! local log `__cluster_metadata/metadata.log` ([`super::log`]) and which has no quorum
//! files yet.
//!
//! On the first start after the upgrade the old log's records are proposed to the new
//! quorum as its first entry (the same cluster id and topic ids, so partition
//! directories and committed offsets stay valid), then the file is renamed to
//! `metadata.log.migrated` and the directory fsynced. A crash between the two is safe:
//! on the next start the quorum already has the old log's cluster id, so the records are
//! not proposed again, and the rename is done.

use std::path::{Path, PathBuf};

use super::log;
use super::metadata_log::{MetadataLog, ProposeError};
use super::records::MetadataRecord;
use crate::storage::StorageError;
use crate::storage::file_format::sync_dir;

/// The name the old log gets once migrated.
pub const MIGRATED_FILE_NAME: &str = "metadata.log.migrated";

/// Why a migration could not be done.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot migrate the old metadata log: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot migrate the old metadata log: {0}")]
    Propose(#[from] ProposeError),
    #[error(
        "{path} belongs to cluster {old}, but the metadata quorum in the same directory to cluster {quorum}; remove one of them"
    )]
    OtherCluster {
        path: PathBuf,
        old: String,
        quorum: String,
    },
}

/// Migrates the old metadata log of `data_dir` into `log` (this broker's started quorum
/// member) when there is one; does nothing otherwise.
pub async fn migrate(data_dir: &Path, log: &MetadataLog) -> Result<(), MigrationError> {
    let path = log::path(data_dir);
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || log::read(&path))
            .await
            .expect("reading the old metadata log panicked")?
    };
    let Some(records) = read else {
        return Ok(());
    };
    let old_cluster = records.iter().find_map(|record| match record {
        MetadataRecord::ClusterInitialized { cluster_id } => Some(cluster_id.clone()),
        _ => None,
    });
    let quorum_cluster = log.image().cluster_id.clone();
    let count = records.len();
    let proposed = if quorum_cluster.is_empty() {
        if !records.is_empty() {
            log.propose(records).await?;
        }
        true
    } else if old_cluster.as_ref() == Some(&quorum_cluster) {
        // Proposed by an earlier start that stopped before the rename.
        false
    } else {
        return Err(MigrationError::OtherCluster {
            path,
            old: old_cluster.unwrap_or_else(|| "(none)".to_owned()),
            quorum: quorum_cluster,
        });
    };
    let renamed = path.with_file_name(MIGRATED_FILE_NAME);
    tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
        std::fs::rename(&path, &renamed)
            .map_err(|error| StorageError::io("rename", &path, error))?;
        sync_dir(renamed.parent().expect("the old log is in a directory"))
    })
    .await
    .expect("renaming the old metadata log panicked")?;
    tracing::info!(
        records = count,
        cluster_id = old_cluster.as_deref().unwrap_or(""),
        proposed_now = proposed,
        "migrated the pre-Raft metadata log into the metadata quorum (kept as {MIGRATED_FILE_NAME})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::BrokerConfig;

    async fn start(config: &BrokerConfig) -> MetadataLog {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        MetadataLog::start(config, listener).await.unwrap()
    }

    fn old_records(cluster_id: &str) -> Vec<MetadataRecord> {
        vec![
            MetadataRecord::ClusterInitialized {
                cluster_id: cluster_id.to_owned(),
            },
            // As a pre-Raft log reads: the fields added since take their defaults.
            MetadataRecord::BrokerRegistered {
                node_id: 0,
                host: "127.0.0.1".to_owned(),
                port: 9192,
                internal_address: String::new(),
                incarnation_id: String::new(),
                rack: None,
                broker_epoch: 0,
                fenced: false,
                external: None,
            },
            MetadataRecord::TopicCreated {
                name: "orders".to_owned(),
                topic_id: uuid::Uuid::from_u128(7).to_string(),
                config: BTreeMap::new(),
                replicas: vec![vec![0], vec![0]],
            },
        ]
    }

    /// The old log's records become the quorum's first entry, with their ids; the file
    /// is renamed. Put back as if a crash had come before the rename, it is renamed
    /// again without a second proposal. Without an old log nothing happens.
    #[tokio::test]
    async fn migrates_once_even_across_a_crash_before_the_rename() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let old = log::path(dir.path());
        log::write(&old, &old_records("old-cluster"));

        let metadata = start(&config).await;
        migrate(dir.path(), &metadata).await.unwrap();
        let image = metadata.image();
        assert_eq!(image.cluster_id, "old-cluster");
        assert_eq!(
            image.topic("orders").unwrap().topic_id,
            uuid::Uuid::from_u128(7)
        );
        assert_eq!(image.records_applied, 3);
        assert!(!old.exists());
        let migrated = old.with_file_name(MIGRATED_FILE_NAME);
        assert!(migrated.is_file());
        metadata.shutdown().await;

        std::fs::copy(&migrated, &old).unwrap();
        let metadata = start(&config).await;
        let before = metadata.image();
        migrate(dir.path(), &metadata).await.unwrap();
        assert_eq!(metadata.image(), before);
        assert_eq!(metadata.image().records_applied, 3);
        assert!(!old.exists());
        migrate(dir.path(), &metadata).await.unwrap();
        assert_eq!(metadata.image(), before);
        metadata.shutdown().await;
    }

    /// An old log of another cluster than the quorum's is refused, named, and left
    /// where it is.
    #[tokio::test]
    async fn an_old_log_of_another_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::for_tests(dir.path());
        let old = log::path(dir.path());
        log::write(&old, &old_records("first"));
        let metadata = start(&config).await;
        migrate(dir.path(), &metadata).await.unwrap();
        log::write(&old, &old_records("second"));
        let error = migrate(dir.path(), &metadata).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{} belongs to cluster second, but the metadata quorum in the same directory to cluster first; remove one of them",
                old.display()
            )
        );
        assert!(old.is_file());
        metadata.shutdown().await;
    }
}
