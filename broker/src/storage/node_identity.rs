//! `<data_dir>/node.identity`: the node, and the cluster, a data directory belongs to.
//!
//! A data directory holds one node's share of one cluster. Started with another node
//! id (a copied directory, a mixed-up configuration), a broker would register under the
//! new id and serve the other node's partitions as its own; in a cluster, two nodes
//! would claim the same data. So the first start records the node id, and a start with
//! a different one is refused, naming both. The cluster id is recorded as soon as the
//! metadata knows it; metadata of another cluster in this directory is refused too.
//!
//! The payload is JSON in a state file (see [`file_format`](super::file_format)):
//!
//! ```text
//! {"version": 1, "node_id": 1, "cluster_id": "4f60bcff-…" | null}
//! ```
//!
//! A directory written by an earlier release has no such file; it gets one from the
//! configuration, which is all an earlier release went by.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::StorageError;
use super::file_format::{StateKind, read_state_file, write_state_file};

pub const FILE_NAME: &str = "node.identity";
/// The version of the payload this release writes and reads.
const VERSION: u32 = 1;

/// Whom a data directory belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    version: u32,
    pub node_id: i32,
    /// `None` until the metadata has a cluster id.
    pub cluster_id: Option<String>,
}

/// Why a broker may not use a data directory.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the data directory {dir} belongs to node {recorded}, but this broker is node \
         {configured}: start it with node_id {recorded}, or give node {configured} a data \
         directory of its own"
    )]
    OtherNode {
        dir: PathBuf,
        recorded: i32,
        configured: i32,
    },
    #[error(
        "the data directory {dir} belongs to cluster {recorded}, but the metadata in it is \
         of cluster {found}"
    )]
    OtherCluster {
        dir: PathBuf,
        recorded: String,
        found: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl NodeIdentity {
    /// Takes `data_dir` for node `node_id`: refuses a directory recorded for another
    /// node, and records the node id in one that has no identity yet (new, or written
    /// by an earlier release).
    pub fn claim(data_dir: &Path, node_id: i32) -> Result<Self, IdentityError> {
        if let Some(identity) = Self::load(data_dir)? {
            if identity.node_id != node_id {
                return Err(IdentityError::OtherNode {
                    dir: data_dir.to_owned(),
                    recorded: identity.node_id,
                    configured: node_id,
                });
            }
            return Ok(identity);
        }
        let identity = Self {
            version: VERSION,
            node_id,
            cluster_id: None,
        };
        identity.store(data_dir)?;
        tracing::info!(node_id, data_dir = %data_dir.display(), "recorded the data directory's node id");
        Ok(identity)
    }

    /// Records the cluster id the metadata holds, or refuses if the directory was
    /// recorded for another cluster.
    pub fn confirm_cluster(
        &mut self,
        data_dir: &Path,
        cluster_id: &str,
    ) -> Result<(), IdentityError> {
        match &self.cluster_id {
            Some(recorded) if recorded == cluster_id => Ok(()),
            Some(recorded) => Err(IdentityError::OtherCluster {
                dir: data_dir.to_owned(),
                recorded: recorded.clone(),
                found: cluster_id.to_owned(),
            }),
            None => {
                self.cluster_id = Some(cluster_id.to_owned());
                self.store(data_dir)?;
                Ok(())
            }
        }
    }

    /// The identity recorded in `data_dir`; `None` when there is none.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, StorageError> {
        let Some(payload) = read_state_file(data_dir, FILE_NAME, StateKind::NodeIdentity)? else {
            return Ok(None);
        };
        let corrupt = |reason: String| StorageError::Corrupt {
            path: data_dir.join(FILE_NAME),
            reason,
        };
        // The version first: a newer format may have fields this release does not know.
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let unreadable =
            |error: serde_json::Error| corrupt(format!("unreadable identity: {error}"));
        let versioned: Versioned = serde_json::from_slice(&payload).map_err(unreadable)?;
        if versioned.version != VERSION {
            return Err(corrupt(format!(
                "identity format version {} is not supported (expected {VERSION}); was it \
                 written by a newer release?",
                versioned.version
            )));
        }
        serde_json::from_slice(&payload)
            .map(Some)
            .map_err(unreadable)
    }

    fn store(&self, data_dir: &Path) -> Result<(), StorageError> {
        let payload = serde_json::to_vec(self).expect("an identity serializes");
        write_state_file(data_dir, FILE_NAME, StateKind::NodeIdentity, &payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first claim records the node id; a claim with the same id finds it, one with
    /// another id is refused naming both ids and the directory.
    #[test]
    fn claim_records_then_refuses_another_node() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeIdentity::claim(dir.path(), 1).unwrap();
        assert_eq!((first.node_id, first.cluster_id.as_deref()), (1, None));
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), Some(first.clone()));
        assert_eq!(NodeIdentity::claim(dir.path(), 1).unwrap(), first);

        let error = NodeIdentity::claim(dir.path(), 2).unwrap_err();
        assert!(matches!(
            error,
            IdentityError::OtherNode {
                recorded: 1,
                configured: 2,
                ..
            }
        ));
        let message = error.to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
        assert_eq!(NodeIdentity::load(dir.path()).unwrap(), Some(first));
    }

    /// The cluster id is recorded once and survives a reload; metadata of another
    /// cluster is refused.
    #[test]
    fn cluster_id_is_recorded_then_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut identity = NodeIdentity::claim(dir.path(), 0).unwrap();
        identity.confirm_cluster(dir.path(), "c-1").unwrap();
        let mut reloaded = NodeIdentity::claim(dir.path(), 0).unwrap();
        assert_eq!(reloaded.cluster_id.as_deref(), Some("c-1"));
        reloaded.confirm_cluster(dir.path(), "c-1").unwrap();
        let error = reloaded.confirm_cluster(dir.path(), "c-2").unwrap_err();
        assert!(
            matches!(&error, IdentityError::OtherCluster { recorded, found, .. } if recorded == "c-1" && found == "c-2"),
            "{error}"
        );
    }

    /// A damaged file, or one of a newer format, is an error, never overwritten.
    #[test]
    fn damaged_or_newer_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        NodeIdentity::claim(dir.path(), 3).unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            NodeIdentity::claim(dir.path(), 3),
            Err(IdentityError::Storage(StorageError::Corrupt { .. }))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);

        let newer = br#"{"version":2,"node_id":3,"cluster_id":null,"incarnation":7}"#;
        write_state_file(dir.path(), FILE_NAME, StateKind::NodeIdentity, newer).unwrap();
        let error = NodeIdentity::claim(dir.path(), 3).unwrap_err().to_string();
        assert!(error.contains("version 2"), "{error}");
    }
}
