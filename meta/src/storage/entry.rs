//! What the shards' Raft groups replicate and answer, and openraft's type configuration.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use meta_core::{FsError, Outcome};

/// A command with its proposer's tag: what a shard's log holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tagged {
    pub tag: meta_core::sessions::Tag,
    pub cmd: meta_core::Command,
}

/// A `Tagged` to encode without owning (or copying) its command: the same serde form, field
/// for field, so its bytes are a `Tagged`'s.
#[derive(Serialize)]
pub struct TaggedRef<'a> {
    pub tag: meta_core::sessions::Tag,
    pub cmd: &'a meta_core::Command,
}

impl TaggedRef<'_> {
    /// Its postcard encoding, in a buffer of exactly its size.
    pub fn encode(&self) -> Result<Bytes, FsError> {
        let size = postcard::experimental::serialized_size(self)
            .map_err(|e| FsError::Io(format!("encode a command: {e}")))?;
        let buf = postcard::to_extend(self, Vec::with_capacity(size))
            .map_err(|e| FsError::Io(format!("encode a command: {e}")))?;
        Ok(Bytes::from(buf))
    }
}

/// One entry of a shard's log: the namespace commands proposed together (group commit: what
/// queued for the shard while its previous entry was being made durable), applied in order,
/// each on its own (a failed one leaves nothing behind and does not stop the others), each at
/// most once however often its proposer sent it (`sessions`).
///
/// The commands are held encoded (postcard of `Vec<Tagged>`), encoded once by the proposer:
/// the log record and AppendEntries carry these bytes as they are, and every copy openraft
/// makes of an entry (into the log's memory, per replication stream, for apply) costs a
/// reference count instead of a deep copy of every command. Apply decodes them, once per
/// replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    #[serde(with = "as_bytes")]
    pub bytes: Bytes,
}

impl Proposal {
    /// The entry of `cmds`, encoded into a buffer of exactly its size (no regrowth).
    pub fn encode(cmds: &[Tagged]) -> Result<Proposal, FsError> {
        let size = postcard::experimental::serialized_size(cmds)
            .map_err(|e| FsError::Io(format!("encode proposal: {e}")))?;
        let buf = postcard::to_extend(cmds, Vec::with_capacity(size))
            .map_err(|e| FsError::Io(format!("encode proposal: {e}")))?;
        // Exactly full: `Bytes` takes the buffer over without a further allocation.
        Ok(Proposal {
            bytes: Bytes::from(buf),
        })
    }

    /// The entry of commands each encoded on its own (`TaggedRef::encode`): postcard writes a
    /// sequence as its length (a varint) and then its elements, so this is byte for byte what
    /// `encode` writes of the decoded commands, without a copy of any command.
    pub fn concat(parts: &[Bytes]) -> Result<Proposal, FsError> {
        let enc = |e| FsError::Io(format!("encode proposal: {e}"));
        let body: usize = parts.iter().map(Bytes::len).sum();
        let count = postcard::experimental::serialized_size(&parts.len()).map_err(enc)?;
        let mut buf =
            postcard::to_extend(&parts.len(), Vec::with_capacity(count + body)).map_err(enc)?;
        for p in parts {
            buf.extend_from_slice(p);
        }
        Ok(Proposal {
            bytes: Bytes::from(buf),
        })
    }

    /// The commands, decoded one at a time (no `Vec` of them all).
    pub fn commands(&self) -> Commands<'_> {
        match postcard::take_from_bytes::<usize>(&self.bytes) {
            Ok((left, rest)) => Commands {
                left,
                rest,
                bad: false,
            },
            Err(_) => Commands {
                left: 0,
                rest: &[],
                bad: true,
            },
        }
    }

    /// All the commands.
    pub fn decode(&self) -> Result<Vec<Tagged>, FsError> {
        self.commands().collect()
    }
}

/// The commands of a `Proposal`, in order; an undecodable entry yields one error and then
/// nothing more.
pub struct Commands<'a> {
    left: usize,
    rest: &'a [u8],
    bad: bool,
}

impl Iterator for Commands<'_> {
    type Item = Result<Tagged, FsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if std::mem::take(&mut self.bad) {
            return Some(Err(FsError::Corrupt(
                "log entry's command count undecodable".into(),
            )));
        }
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match postcard::take_from_bytes::<Tagged>(self.rest) {
            Ok((t, rest)) => {
                self.rest = rest;
                Some(Ok(t))
            }
            Err(e) => {
                self.left = 0;
                Some(Err(FsError::Corrupt(format!("log entry's commands: {e}"))))
            }
        }
    }
}

/// `Bytes` as a serde byte string (postcard: its length, then the bytes as they are).
mod as_bytes {
    use bytes::Bytes;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes::copy_from_slice(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes::from(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// What applying a proposal gave, one result per command: the same on every replica (`apply`
/// is deterministic), so a failed command is as much a result as a successful one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(pub Vec<Result<Outcome, FsError>>);

/// A shard's whole state machine, as a snapshot sent to a replica that fell behind the log
/// (postcard of `machine::Dump`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDump {
    pub bytes: Vec<u8>,
}

openraft::declare_raft_types!(
    /// The shards' Raft configuration: node ids are the MDS nodes' ids.
    pub Cfg:
        D = Proposal,
        R = Reply,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<Cfg>,
        SnapshotData = ShardDump,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Entry = openraft::Entry<Cfg>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type Membership = openraft::StoredMembership<u64, openraft::BasicNode>;
pub type StorageError = openraft::StorageError<u64>;
pub type Raft = openraft::Raft<Cfg>;

/// A log write that failed, as openraft wants it reported.
pub fn log_write_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::write_logs(openraft::AnyError::error(e.to_string())).into()
}

/// A vote that could not be made durable.
pub fn vote_write_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::write_vote(openraft::AnyError::error(e.to_string())).into()
}

/// A state machine that could not be read or written (checkpoint, snapshot).
pub fn machine_err(e: impl std::fmt::Display) -> StorageError {
    openraft::StorageIOError::write_state_machine(openraft::AnyError::error(e.to_string())).into()
}
