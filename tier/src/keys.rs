//! How objects are named in the bucket.
//!
//! A key is a pure function of what the object holds, so whoever knows (file, segment,
//! generation) finds it with one GET and never needs a LIST:
//!
//! ```text
//! <root>/<hhhh>/d/<ino:016x>/<segment:016x>/<generation:016x>    data segment
//! <root>/<hhhh>/m/<ino:016x>/<segment:016x>/<generation:016x>    metadata (shard, checkpoint)
//! ```
//!
//! `hhhh` is the first 16 bits of blake3(kind, ino, segment) in hex: S3 scales request rates
//! per key prefix, and inode numbers are allocated in order (a shard's in its top 16 bits), so
//! without the hash one hot file or shard would put all its traffic under one prefix. The hash
//! leaves out the generation, so a segment's generations sit together for a human reading a
//! listing. The bucket itself is addressed path-style (`endpoint/bucket/key`), in `store.rs`.

use crate::object::Kind;

/// What names an object: the same fields its header carries (`object.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub kind: Kind,
    /// The file's inode number (for metadata objects, the shard's).
    pub ino: u64,
    /// The segment within the file (for metadata, the checkpoint or log-tail index).
    pub segment: u64,
    /// Bumped on every rewrite of the segment, so an upload never overwrites a live object.
    pub generation: u64,
}

/// The part of the bucket one cluster owns: every key starts with the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpace {
    root: String,
}

impl KeySpace {
    /// `root` is one or more path segments of `[A-Za-z0-9._-]` separated by `/`, no `/` at
    /// either end (e.g. the cluster's name); `None` if it is anything else.
    pub fn new(root: &str) -> Option<Self> {
        let ok = !root.is_empty()
            && root.len() <= 256
            && root.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            });
        ok.then(|| KeySpace {
            root: root.to_string(),
        })
    }

    /// The key of an object.
    pub fn key(&self, id: &ObjectId) -> String {
        format!(
            "{}/{:04x}/{}/{:016x}/{:016x}/{:016x}",
            self.root,
            spread(id.kind, id.ino, id.segment),
            kind_letter(id.kind),
            id.ino,
            id.segment,
            id.generation
        )
    }

    /// The object a key names, if it is one of ours (a recovery tool checks it against the
    /// object's header).
    pub fn parse(&self, key: &str) -> Option<ObjectId> {
        let rest = key.strip_prefix(&self.root)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let hash = parts.next()?;
        let kind = match parts.next()? {
            "d" => Kind::Data,
            "m" => Kind::Metadata,
            _ => return None,
        };
        let mut num = || -> Option<u64> {
            let p = parts.next()?;
            (p.len() == 16).then_some(())?;
            u64::from_str_radix(p, 16).ok()
        };
        let (ino, segment, generation) = (num()?, num()?, num()?);
        if parts.next().is_some() || hash != format!("{:04x}", spread(kind, ino, segment)) {
            return None;
        }
        Some(ObjectId {
            kind,
            ino,
            segment,
            generation,
        })
    }
}

fn kind_letter(kind: Kind) -> char {
    match kind {
        Kind::Data => 'd',
        Kind::Metadata => 'm',
    }
}

fn spread(kind: Kind, ino: u64, segment: u64) -> u16 {
    let mut h = blake3::Hasher::new();
    h.update(&[kind as u8]);
    h.update(&ino.to_le_bytes());
    h.update(&segment.to_le_bytes());
    let b = h.finalize();
    u16::from_be_bytes([b.as_bytes()[0], b.as_bytes()[1]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn id(ino: u64, segment: u64, generation: u64) -> ObjectId {
        ObjectId {
            kind: Kind::Data,
            ino,
            segment,
            generation,
        }
    }

    #[test]
    fn keys_are_deterministic_and_parse_back() {
        let ks = KeySpace::new("cluster-a/tier").expect("root");
        let a = id(0x0001_0000_0000_002a, 7, 3);
        let k = ks.key(&a);
        assert_eq!(k, ks.key(&a));
        assert!(k.starts_with("cluster-a/tier/"), "{k}");
        assert!(
            k.ends_with("/d/000100000000002a/0000000000000007/0000000000000003"),
            "{k}"
        );
        assert_eq!(ks.parse(&k), Some(a));
        let m = ObjectId {
            kind: Kind::Metadata,
            ..a
        };
        assert_ne!(ks.key(&m), k);
        assert_eq!(ks.parse(&ks.key(&m)), Some(m));
        // A wrong hash, a foreign root, a short number: not ours.
        assert_eq!(ks.parse(&k.replacen("tier/", "tier/x", 1)), None);
        assert_eq!(KeySpace::new("other").and_then(|o| o.parse(&k)), None);
        assert_eq!(ks.parse(&k[..k.len() - 1]), None);
    }

    #[test]
    fn consecutive_files_spread_over_many_prefixes() {
        let ks = KeySpace::new("c").expect("root");
        let prefixes: HashSet<String> = (0..1000u64)
            .map(|ino| ks.key(&id(ino, 0, 1))[..6].to_string())
            .collect();
        assert!(prefixes.len() > 950, "{} distinct prefixes", prefixes.len());
        // Generations of one segment share a prefix.
        assert_eq!(ks.key(&id(5, 1, 1))[..6], ks.key(&id(5, 1, 2))[..6]);
    }

    #[test]
    fn roots_are_plain_path_segments() {
        for bad in ["", "/a", "a/", "a//b", "a/../b", "a b", "ü"] {
            assert!(KeySpace::new(bad).is_none(), "{bad:?}");
        }
        assert!(KeySpace::new("a.b_c-1/x").is_some());
    }
}
