//! The cluster's data key (issue 46, encryption at rest): what seals reduced segments on the
//! data servers and file data in the object store.
//!
//! The key is made once, at random, by the first MDS node that starts with `[encryption]
//! key_file`, and kept only wrapped by that file's key (the KEK) in shard 0's replicated state
//! (`Command::SetDataKey`, compare-and-set, so two nodes starting at once agree on one key).
//! Every node unwraps it with its own key file at start. The KEK never leaves the node's file,
//! so neither the data servers, nor the bucket, nor a copy of the metadata can open a segment.
//!
//! A node refuses to run (`DataKeyError`, which stops `cfs server`) when its key file does not
//! open the cluster's key, or when the cluster's data is encrypted and it has no key file: it
//! could neither read nor write the cluster's data. Rotation re-wraps the same data key under
//! a new KEK, no segment is rewritten: a node started with `key_file` = the new KEK and
//! `previous_key_file` = the old one records the re-wrapped key; the other nodes go on with
//! the key they hold and are restarted with the new file at leisure.
use std::path::PathBuf;
use std::time::Duration;

use meta::namespace::{Command, FsError, Namespace, ShardId, DRAIN_INO};
use meta_core::apply::DATA_KEY_ATTR;
use reduce::{CryptError, DataKey, Kek, WrappedKey};

use super::Cluster;

/// `[encryption]`: the operator's key-encryption keys, read at start.
#[derive(Clone, Debug)]
pub struct KeyFiles {
    /// `key_file`: where the KEK was read (for messages).
    pub path: PathBuf,
    pub kek: Kek,
    /// `previous_key_file`: the KEK the data key may still be wrapped under (a rotation).
    pub previous: Option<Kek>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    #[error(
        "[encryption] key_file {path} (key tag {ours}) does not open this cluster's data key \
         (wrapped under key tag {found}): start the node with the key file the cluster was \
         set up with, or name that file as previous_key_file to rotate to this one"
    )]
    WrongKey {
        path: PathBuf,
        found: String,
        ours: String,
    },
    #[error(
        "this cluster's data is encrypted at rest, and this node has no [encryption] key_file: \
         it could not read or write the data"
    )]
    NoKeyFile,
    #[error("the cluster's wrapped data key is damaged: {0}")]
    Damaged(CryptError),
    #[error("cannot make a data key: {0}")]
    Make(CryptError),
}

/// How long to wait between tries while shard 0 cannot answer (no quorum yet).
const RETRY: Duration = Duration::from_millis(500);

fn hex(tag: [u8; 8]) -> String {
    tag.iter().map(|b| format!("{b:02x}")).collect()
}

impl Cluster {
    /// Whether this node seals what it stores (`[encryption]` configured).
    pub fn sealing(&self) -> bool {
        self.cfg.encryption.is_some()
    }

    /// The data key, once `keep_data_key` found or made it.
    pub fn data_key(&self) -> Option<&DataKey> {
        self.data_key.get()
    }

    /// The data key's tag in hex (an identifier, not the key), once it is known.
    pub fn data_key_tag(&self) -> Option<String> {
        self.data_key().map(|k| hex(k.tag()))
    }

    /// Whether jobs that store data may run: not before the key is known on a sealing node
    /// (they would store plaintext, or stall on the key mid-job).
    pub(crate) fn key_ready(&self) -> bool {
        !self.sealing() || self.data_key.get().is_some()
    }

    /// Finds (or makes, or re-wraps) the cluster's data key once shard 0 can answer, and keeps
    /// it. Returns when done; an error means this node must not run.
    pub async fn keep_data_key(&self, ns: &Namespace) -> Result<(), DataKeyError> {
        loop {
            match self.settle_data_key(ns).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(Settle::Fatal(e)) => return Err(e),
                Err(Settle::Again(why)) => {
                    tracing::debug!("data key not settled yet: {why}");
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    /// One try: `Ok(true)` settled, `Ok(false)` or `Again` to try later.
    async fn settle_data_key(&self, ns: &Namespace) -> Result<bool, Settle> {
        // Fresh: a node that has not caught up must not make a second key.
        ns.barrier(ShardId(0))
            .await
            .map_err(|e| Settle::Again(e.to_string()))?;
        let stored = ns
            .xattrs(DRAIN_INO)
            .map_err(|e| Settle::Again(format!("{e:?}")))?
            .get(DATA_KEY_ATTR)
            .cloned();
        let Some(files) = &self.cfg.encryption else {
            return match stored {
                Some(_) => Err(Settle::Fatal(DataKeyError::NoKeyFile)),
                None => Ok(true),
            };
        };
        let Some(stored) = stored else {
            let key = DataKey::generate().map_err(|e| Settle::Fatal(DataKeyError::Make(e)))?;
            let wrapped = key
                .wrap(&files.kek)
                .map_err(|e| Settle::Fatal(DataKeyError::Make(e)))?;
            return match self.record_key(ns, &wrapped, None).await? {
                true => {
                    tracing::info!(key = %hex(key.tag()), "made the cluster's data key");
                    Ok(self.data_key.set(key).is_ok())
                }
                // Another node made one first: take that one, next try.
                false => Ok(false),
            };
        };
        let wrapped =
            WrappedKey::from_bytes(&stored).map_err(|e| Settle::Fatal(DataKeyError::Damaged(e)))?;
        let key = match wrapped.unwrap_key(&files.kek) {
            Ok(k) => k,
            Err(CryptError::WrongKey { found, ours }) => {
                let wrong = || {
                    Settle::Fatal(DataKeyError::WrongKey {
                        path: files.path.clone(),
                        found: hex(found),
                        ours: hex(ours),
                    })
                };
                let old = files.previous.as_ref().ok_or_else(wrong)?;
                let key = wrapped.unwrap_key(old).map_err(|_| wrong())?;
                let rewrapped = key
                    .wrap(&files.kek)
                    .map_err(|e| Settle::Fatal(DataKeyError::Make(e)))?;
                if !self.record_key(ns, &rewrapped, Some(&stored)).await? {
                    return Ok(false);
                }
                tracing::warn!(
                    key = %hex(key.tag()),
                    from = %hex(old.tag()),
                    to = %hex(files.kek.tag()),
                    "re-wrapped the cluster's data key under the new key file: restart the \
                     other MDS nodes with it, then drop previous_key_file"
                );
                key
            }
            Err(e) => return Err(Settle::Fatal(DataKeyError::Damaged(e))),
        };
        tracing::info!(key = %hex(key.tag()), "data key unwrapped: sealing data at rest");
        // Set once per process: a second call finds it set and changes nothing.
        let _ = self.data_key.set(key);
        Ok(true)
    }

    /// `SetDataKey`: whether it was recorded (`false`: the stored key changed meanwhile).
    async fn record_key(
        &self,
        ns: &Namespace,
        wrapped: &WrappedKey,
        expect: Option<&[u8]>,
    ) -> Result<bool, Settle> {
        match ns
            .execute(Command::SetDataKey {
                wrapped: wrapped.as_bytes().to_vec(),
                expect: expect.map(<[u8]>::to_vec),
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(FsError::Changed) => Ok(false),
            Err(e) => Err(Settle::Again(format!("{e:?}"))),
        }
    }
}

enum Settle {
    /// This node must stop.
    Fatal(DataKeyError),
    /// Shard 0 could not answer: try later.
    Again(String),
}
