//! Shared helpers for the integration tests: deterministic data and an in-memory store that
//! plays the cluster's chunk index and segment store.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use rand::{rngs::StdRng, RngCore, SeedableRng};
use reduce::{ChunkId, ChunkLoc, DedupKey, Params, Reduced, SegmentId};

pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

pub fn params() -> Params {
    Params::new(DedupKey::from_bytes([7; 32]))
}

/// The workspace's own Rust sources concatenated (real text, present in every checkout),
/// repeated with a varying header until at least `min_len` bytes.
pub fn source_corpus(min_len: usize) -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rs_files(&root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no .rs files under {}", root.display());
    let mut out = Vec::new();
    let mut round = 0u32;
    while out.len() < min_len {
        for f in &files {
            if let Ok(b) = std::fs::read(f) {
                out.extend_from_slice(format!("// round {round} {}\n", f.display()).as_bytes());
                out.extend_from_slice(&b);
            }
            if out.len() >= min_len {
                break;
            }
        }
        round += 1;
    }
    out
}

/// Every *.rs file below `dir`, skipping hidden folders and build output.
pub fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name.starts_with("target-") {
            continue;
        }
        if p.is_dir() {
            rs_files(&p, out);
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

/// Asserts `decode` refuses every truncation of a valid encoding, the encoding one byte
/// longer, and the encoding with any one bit flipped.
pub fn refuses_every_truncation_and_flip(valid: &[u8], decode: impl Fn(&[u8]) -> bool) {
    assert!(decode(valid), "the valid encoding itself is refused");
    for n in 0..valid.len() {
        assert!(!decode(&valid[..n]), "truncated to {n} accepted");
    }
    let mut longer = valid.to_vec();
    longer.push(0);
    assert!(!decode(&longer), "one byte longer accepted");
    for bit in 0..valid.len() * 8 {
        let mut b = valid.to_vec();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(!decode(&b), "bit {bit} flipped accepted");
    }
}

/// The caller's side: a chunk index and a segment store.
#[derive(Default)]
pub struct Store {
    pub index: HashMap<ChunkId, ChunkLoc>,
    pub segments: HashMap<SegmentId, Vec<u8>>,
}

impl Store {
    /// Keep the new segments, then index their chunks (the order the cluster must keep).
    pub fn absorb(&mut self, r: &Reduced) {
        for s in &r.new_segments {
            self.segments.insert(s.id, s.bytes.clone());
        }
        for (id, loc) in &r.new_chunks {
            self.index.insert(*id, *loc);
        }
    }
}
