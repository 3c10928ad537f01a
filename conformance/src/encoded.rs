//! Host side of the `encoded` scenario (cfs-cluster-ec3 / cfs-cluster-ec6: `--encode-after 2`).
//! The guest cannot see the data servers, so the host looks at their data directories: a file
//! is encoded when every one of its k+m shards has a header (`shards/<object id>` in a data
//! server's data directory; its layout is `ds::server::shards::store::ShardHeader`) naming the
//! file, one epoch, k, m and the file's length, on k+m distinct data servers, and its mirror
//! copies (`chunks/objects/<id & 0xff>/<id>/`) are gone. Steps, at the guest's rendezvous:
//!   files written -> wait (bounded) until the big ones are encoded and the small one is still
//!   mirrored -> the guest remounts and reads them -> the MDS/DS counters say where the bytes
//!   came from (data servers, not the MDS) -> the guest overwrites a range of an encoded file
//!   -> wait until it is encoded again at a NEW epoch (copied back to mirrors, re-encoded) ->
//!   the guest reads it again, removes another encoded file -> its shards and copies go.

use crate::hostops::{deltas, Host, Roles, Stop};
use crate::server::Running;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the cluster may take to encode the guest's files: `--encode-after 2` plus the
/// encoder's scan, plus the time the kernel keeps a delegation after close (the encoder skips
/// a file anyone holds for writing), with room for a machine shared with builds.
const ENCODE_WAIT: Duration = Duration::from_secs(120);
/// How long the removal of an encoded file may take to reach every data server.
const SWEEP_WAIT: Duration = Duration::from_secs(60);
/// Check word of a shard header ("cfs_shd1"), its first 8 bytes.
const HEADER_MAGIC: u64 = 0x6366_735f_7368_6431;

/// One shard header as the data server wrote it (XDR: magic, ShardRef { file, epoch, index,
/// k, m, unit_shift }, file_len, sealed_end, placement).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub file: u64,
    pub epoch: u64,
    pub index: u32,
    pub k: u32,
    pub m: u32,
    pub unit_shift: u32,
    pub file_len: u64,
    pub sealed_end: u64,
}

/// Parses the fixed-size front of a header file; None if it is not one.
pub fn parse_header(b: &[u8]) -> Option<Header> {
    let u64_at =
        |o: usize| -> Option<u64> { Some(u64::from_be_bytes(b.get(o..o + 8)?.try_into().ok()?)) };
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_be_bytes(b.get(o..o + 4)?.try_into().ok()?)) };
    if u64_at(0)? != HEADER_MAGIC {
        return None;
    }
    Some(Header {
        file: u64_at(8)?,
        epoch: u64_at(16)?,
        index: u32_at(24)?,
        k: u32_at(28)?,
        m: u32_at(32)?,
        unit_shift: u32_at(36)?,
        file_len: u64_at(40)?,
        sealed_end: u64_at(48)?,
    })
}

/// Bytes shard `index` of a k+m code with `1 << unit_shift` units stores for a file of `size`
/// bytes (docs/EC.md): data shard i holds the file's units u with u % k == i, a parity shard
/// as much as the longest data shard, shard 0. A data shard may hold nothing (a 3 MiB file in
/// 4+2 at 1 MiB leaves shard 3 empty).
pub fn shard_len(size: u64, k: u32, unit_shift: u32, index: u32) -> u64 {
    let (k, unit) = (u64::from(k), 1u64 << unit_shift);
    let i = if u64::from(index) < k {
        u64::from(index)
    } else {
        0
    };
    let (full, tail) = (size / unit, size % unit);
    // the full units of this shard, then the partial last unit if it is this shard's
    let units = full / k + u64::from(full % k > i);
    units * unit + if full % k == i { tail } else { 0 }
}

/// The code the MDS picks for `n` data servers (docs/EC.md): 4+2 from six, 2+1 from three.
pub fn code_for(n: usize) -> Option<(u32, u32)> {
    match n {
        0..=2 => None,
        3..=5 => Some((2, 1)),
        _ => Some((4, 2)),
    }
}

/// A guest file: its name in the working directory, inode number (= the cluster's file id), size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFile {
    pub name: String,
    pub ino: u64,
    pub size: u64,
}

/// "files:big=123/9449817,mid=124/3145728" -> the files.
pub fn parse_files(posted: &str) -> Option<Vec<GuestFile>> {
    let list = posted.strip_prefix("files:")?;
    list.split(',')
        .map(|f| {
            let (name, rest) = f.split_once('=')?;
            let (ino, size) = rest.split_once('/')?;
            Some(GuestFile {
                name: name.to_owned(),
                ino: ino.parse().ok()?,
                size: size.parse().ok()?,
            })
        })
        .collect()
}

/// What the data servers hold of one file.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// (role, header) of every shard header naming the file
    pub shards: Vec<(String, Header)>,
    /// (role, chunk files of the file's own object), every data server
    pub mirror_files: Vec<(String, usize)>,
}

impl Seen {
    /// The epoch at which the file is completely encoded with (k, m) over `size` bytes: k+m
    /// headers of that epoch, indices 0..k+m once each, on k+m distinct data servers, each
    /// covering the whole file and sealed as far as it stores bytes (`shard_len`).
    pub fn encoded_epoch(&self, k: u32, m: u32, size: u64) -> Option<u64> {
        let mut epochs: Vec<u64> = self.shards.iter().map(|(_, h)| h.epoch).collect();
        epochs.sort_unstable();
        epochs.dedup();
        epochs.into_iter().rev().find(|&e| {
            let of: Vec<&(String, Header)> =
                self.shards.iter().filter(|(_, h)| h.epoch == e).collect();
            let mut idx: Vec<u32> = of.iter().map(|(_, h)| h.index).collect();
            idx.sort_unstable();
            let mut roles: Vec<&str> = of.iter().map(|(r, _)| r.as_str()).collect();
            roles.sort_unstable();
            roles.dedup();
            idx == (0..k + m).collect::<Vec<_>>()
                && roles.len() == (k + m) as usize
                && of.iter().all(|(_, h)| {
                    h.k == k
                        && h.m == m
                        && h.file_len == size
                        && h.sealed_end >= shard_len(size, k, h.unit_shift, h.index)
                })
        })
    }

    pub fn mirror_total(&self) -> usize {
        self.mirror_files.iter().map(|(_, n)| n).sum()
    }

    pub fn describe(&self) -> String {
        let sh: Vec<String> = self
            .shards
            .iter()
            .map(|(r, h)| {
                format!(
                    "{r}: shard {} of {}+{} epoch {} unit 2^{} covers {} sealed {}",
                    h.index, h.k, h.m, h.epoch, h.unit_shift, h.file_len, h.sealed_end
                )
            })
            .collect();
        let mi: Vec<String> = self
            .mirror_files
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        format!(
            "shard headers [{}]; mirror chunk files per DS [{}]",
            if sh.is_empty() {
                "none".into()
            } else {
                sh.join("; ")
            },
            mi.join(", ")
        )
    }
}

/// (role, data directory) of every data server: `data = "..."` in the cluster's dsI.toml.
pub(crate) fn data_dirs(srv: &Running, roles: &Roles) -> Result<Vec<(String, PathBuf)>, String> {
    let dir = srv.cluster_dir().ok_or("not a cfs-cluster")?;
    roles
        .iter()
        .map(|(role, _)| {
            let conf = dir.join(format!("{role}.toml"));
            let toml = std::fs::read_to_string(&conf).map_err(|e| format!("read {conf:?}: {e}"))?;
            let data = crate::server::toml_string(&toml, "data")
                .ok_or_else(|| format!("no data directory in {conf:?}"))?;
            Ok((role.clone(), PathBuf::from(data)))
        })
        .collect()
}

/// Every readable shard header of a data server (a temp file or a torn one is skipped: the
/// server never serves from those either).
fn headers(data: &Path) -> Vec<Header> {
    let Ok(rd) = std::fs::read_dir(data.join("shards")) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| parse_header(&b))
        .collect()
}

/// A data server's directory of object `id`'s mirror chunk files.
pub(crate) fn mirror_dir(data: &Path, id: u64) -> PathBuf {
    data.join("chunks")
        .join("objects")
        .join(format!("{:02x}", id & 0xff))
        .join(format!("{id:016x}"))
}

fn mirror_files(data: &Path, id: u64) -> usize {
    std::fs::read_dir(mirror_dir(data, id))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What every data server holds of each of `files`, one pass over the directories.
pub(crate) fn look(dirs: &[(String, PathBuf)], files: &[GuestFile]) -> Vec<Seen> {
    let all: Vec<(String, Vec<Header>)> =
        dirs.iter().map(|(r, d)| (r.clone(), headers(d))).collect();
    files
        .iter()
        .map(|f| Seen {
            shards: all
                .iter()
                .flat_map(|(r, hs)| {
                    hs.iter()
                        .filter(|h| h.file == f.ino)
                        .map(move |h| (r.clone(), h.clone()))
                })
                .collect(),
            mirror_files: dirs
                .iter()
                .map(|(r, d)| (r.clone(), mirror_files(d, f.ino)))
                .collect(),
        })
        .collect()
}

/// Polls until `done` holds for what the data servers hold of `files`, or `limit` passes;
/// returns the last look and whether it held.
fn poll(
    dirs: &[(String, PathBuf)],
    files: &[GuestFile],
    limit: Duration,
    done: impl Fn(&[Seen]) -> bool,
) -> (Vec<Seen>, bool, Duration) {
    let t0 = Instant::now();
    loop {
        let seen = look(dirs, files);
        if done(&seen) {
            return (seen, true, t0.elapsed());
        }
        if t0.elapsed() > limit {
            return (seen, false, t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Encoded (at an epoch above `after`) with its mirror copies gone.
fn settled_encoded(s: &Seen, f: &GuestFile, k: u32, m: u32, after: u64) -> bool {
    s.encoded_epoch(k, m, f.size).is_some_and(|e| e > after) && s.mirror_total() == 0
}

/// Files of at most m MiB stay mirrored (parity would not pay, docs/EC.md).
fn should_encode(f: &GuestFile, m: u32) -> bool {
    f.size > u64::from(m) << 20
}

pub(crate) fn host(h: &mut Host, srv: &Running) -> Result<(), Stop> {
    let dirs = match data_dirs(srv, &h.roles) {
        Ok(d) => d,
        Err(e) => return Err(h.fail(format!("the data servers' directories: {e}"))),
    };
    let Some((k, m)) = code_for(dirs.len()) else {
        return Err(h.fail(format!("{} data servers: too few to encode", dirs.len())));
    };
    h.await_guest("written")?;
    let posted = h.ctx.rdv.posted_with("files:").unwrap_or_default();
    let Some(files) = parse_files(&posted) else {
        return Err(h.fail(format!("the guest posted no file list (got '{posted}')")));
    };
    let (big, small): (Vec<GuestFile>, Vec<GuestFile>) =
        files.iter().cloned().partition(|f| should_encode(f, m));
    if big.len() < 2 || small.is_empty() {
        return Err(h.fail(format!(
            "the scenario needs two files above {m} MiB and one at most {m} MiB, got {files:?}"
        )));
    }
    h.info(format!(
        "{} data servers: {k}+{m}; waiting up to {} s for {} to be encoded",
        dirs.len(),
        ENCODE_WAIT.as_secs(),
        names(&big)
    ));
    let written = h.settled(srv, "written (files closed, before encoding)")?;

    // 1. Encoded, mirror copies gone; the small file still mirrored, no shards.
    let (seen, ok, took) = poll(&dirs, &big, ENCODE_WAIT, |s| {
        s.iter()
            .zip(&big)
            .all(|(s, f)| settled_encoded(s, f, k, m, 0))
    });
    if !ok {
        let detail: Vec<String> = big
            .iter()
            .zip(&seen)
            .map(|(f, s)| format!("{} (ino {}, {} B): {}", f.name, f.ino, f.size, s.describe()))
            .collect();
        return Err(h.fail(format!(
            "not encoded with mirror copies gone within {} s: {}",
            ENCODE_WAIT.as_secs(),
            detail.join(" | ")
        )));
    }
    let mut epochs = Vec::new();
    for (f, s) in big.iter().zip(&seen) {
        let e = s.encoded_epoch(k, m, f.size).unwrap_or(0);
        epochs.push(e);
        let on: Vec<String> = s
            .shards
            .iter()
            .filter(|(_, x)| x.epoch == e)
            .map(|(r, x)| format!("{r}#{}", x.index))
            .collect();
        h.info(format!(
            "{} (ino {}, {} B) encoded {k}+{m} at epoch {e}: shards {}; mirror copies gone",
            f.name,
            f.ino,
            f.size,
            on.join(" ")
        ));
    }
    h.info(format!("encoded within {:.1} s", took.as_secs_f64()));
    let small_seen = look(&dirs, &small);
    for (f, s) in small.iter().zip(&small_seen) {
        let holders = s.mirror_files.iter().filter(|(_, n)| *n > 0).count();
        if !s.shards.is_empty() || holders == 0 {
            h.fail(format!(
                "{} ({} B, at most {m} MiB) should stay mirrored: {}",
                f.name,
                f.size,
                s.describe()
            ));
        } else {
            h.info(format!(
                "{} ({} B) stays mirrored: chunk files on {holders} data servers, no shards",
                f.name, f.size
            ));
        }
    }
    let encoded = h.settled(srv, "encoded (before the guest's reads)")?;
    let (mr, mw, dr, dw) = deltas(&written, &encoded);
    h.info(format!(
        "while encoding: MDS read {mr} B, write {mw} B; data servers read {dr} B, write {dw} B (the encoder's traffic)"
    ));

    // 2. The guest reads everything after a remount: from the data servers, not the MDS.
    h.ctx.rdv.post("encoded");
    h.await_guest("read")?;
    let read = h.settled(srv, "read (every file read back after a remount)")?;
    h.ctx.rdv.post("counted");
    let (mr, _, dr, _) = deltas(&encoded, &read);
    let big_bytes: u64 = big.iter().map(|f| f.size).sum();
    let all_bytes: u64 = files.iter().map(|f| f.size).sum();
    let per_ds: Vec<String> = read
        .data_servers
        .iter()
        .map(|d| {
            let was = encoded
                .data_servers
                .iter()
                .find(|b| b.id == d.id)
                .map_or(0, |b| b.read_bytes);
            let role = crate::hostops::role_of(&d.listen, &h.roles).unwrap_or(d.id.clone());
            format!("{role} +{}", d.read_bytes.saturating_sub(was))
        })
        .collect();
    let layouts = read
        .mds
        .layouts_granted
        .saturating_sub(encoded.mds.layouts_granted);
    h.info(format!(
        "reads of the encoded files: MDS read {mr} B; data servers read {dr} B ({}); layouts granted +{layouts}",
        per_ds.join(", ")
    ));
    // Linux 6.18+ reads the data shards straight from their k servers (a striped layout);
    // older clients each file through one assembling server.
    let readers = read
        .data_servers
        .iter()
        .filter(|d| {
            let was = encoded
                .data_servers
                .iter()
                .find(|b| b.id == d.id)
                .map_or(0, |b| b.read_bytes);
            d.read_bytes > was
        })
        .count();
    if stripes(&h.ctx.kernel_release) {
        if readers < k as usize {
            h.fail(format!(
                "a {} kernel reads striped layouts, but the reads came from {readers} data servers (expected at least k = {k})",
                h.ctx.kernel_release
            ));
        } else {
            h.info(format!(
                "striped reads: {readers} data servers served them (k = {k})"
            ));
        }
    } else if readers > files.len() {
        h.fail(format!(
            "a {} kernel cannot stripe, yet {readers} data servers served {} files",
            h.ctx.kernel_release,
            files.len()
        ));
    }
    if mr > all_bytes / 100 || dr < big_bytes {
        h.fail(format!(
            "the encoded files were not read through the data servers: MDS read {mr} B (expected <= {}), data servers read {dr} B (expected >= {big_bytes})",
            all_bytes / 100
        ));
    }

    // 3. A write to an encoded file: copied back to mirrors, then encoded again (new epoch).
    h.await_guest("overwritten")?;
    let target = &big[0];
    let old = epochs[0];
    let (seen, ok, took) = poll(&dirs, std::slice::from_ref(target), ENCODE_WAIT, |s| {
        settled_encoded(&s[0], target, k, m, old)
    });
    if ok {
        h.info(format!(
            "{} encoded again after the overwrite within {:.1} s, at epoch {} (was {old}): copied back to mirrors, re-encoded",
            target.name,
            took.as_secs_f64(),
            seen[0].encoded_epoch(k, m, target.size).unwrap_or(0)
        ));
    } else {
        return Err(h.fail(format!(
            "{} not encoded again at an epoch above {old} within {} s after the overwrite: {}",
            target.name,
            ENCODE_WAIT.as_secs(),
            seen[0].describe()
        )));
    }
    h.ctx.rdv.post("reencoded");

    // 4. A removed encoded file leaves no shard and no copy behind.
    h.await_guest("removed")?;
    let gone = &big[1];
    let (seen, ok, took) = poll(&dirs, std::slice::from_ref(gone), SWEEP_WAIT, |s| {
        s[0].shards.is_empty() && s[0].mirror_total() == 0
    });
    if ok {
        h.info(format!(
            "{} removed: its shards gone from every data server within {:.1} s",
            gone.name,
            took.as_secs_f64()
        ));
    } else {
        h.fail(format!(
            "{} removed, but after {} s the data servers still hold: {}",
            gone.name,
            SWEEP_WAIT.as_secs(),
            seen[0].describe()
        ));
    }
    Ok(())
}

fn names(files: &[GuestFile]) -> String {
    files
        .iter()
        .map(|f| format!("{} ({} B)", f.name, f.size))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(file: u64, epoch: u64, index: u32, k: u32, m: u32, len: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&HEADER_MAGIC.to_be_bytes());
        b.extend_from_slice(&file.to_be_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
        for v in [index, k, m, 20] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&shard_len(len, k, 20, index).to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes()); // empty placement
        b
    }

    fn seen(list: &[(&str, Vec<u8>)], mirror: usize) -> Seen {
        Seen {
            shards: list
                .iter()
                .map(|(r, b)| (r.to_string(), parse_header(b).expect("header")))
                .collect(),
            mirror_files: vec![("ds1".into(), mirror)],
        }
    }

    #[test]
    fn header_front_parses_and_junk_does_not() {
        let h = parse_header(&header(7, 3, 1, 2, 1, 9000)).expect("header");
        assert_eq!(
            (h.file, h.epoch, h.index, h.k, h.m, h.unit_shift, h.file_len),
            (7, 3, 1, 2, 1, 20, 9000)
        );
        assert!(parse_header(&[0u8; 60]).is_none());
        assert!(parse_header(&header(7, 3, 1, 2, 1, 9000)[..40]).is_none());
    }

    #[test]
    fn encoded_needs_every_shard_once_on_distinct_servers() {
        let full = [
            ("ds1", header(5, 2, 0, 2, 1, 100)),
            ("ds2", header(5, 2, 1, 2, 1, 100)),
            ("ds3", header(5, 2, 2, 2, 1, 100)),
        ];
        assert_eq!(seen(&full, 0).encoded_epoch(2, 1, 100), Some(2));
        // the wrong length, the wrong code: not this file's encoding
        assert_eq!(seen(&full, 0).encoded_epoch(2, 1, 101), None);
        assert_eq!(seen(&full, 0).encoded_epoch(4, 2, 100), None);
        // a shard missing, or two on one server
        assert_eq!(seen(&full[..2], 0).encoded_epoch(2, 1, 100), None);
        let doubled = [
            full[0].clone(),
            full[1].clone(),
            ("ds2", header(5, 2, 2, 2, 1, 100)),
        ];
        assert_eq!(seen(&doubled, 0).encoded_epoch(2, 1, 100), None);
        // a shard not sealed as far as it stores bytes (an encode under way): not yet
        let mut short = header(5, 2, 0, 2, 1, 100);
        short[55] = 99; // sealed_end 100 -> 99
        let partial = [("ds1", short), full[1].clone(), full[2].clone()];
        assert_eq!(seen(&partial, 0).encoded_epoch(2, 1, 100), None);
        // an older epoch's leftovers beside a complete newer one: the newer counts
        let mut both = full.to_vec();
        both.push(("ds1", header(5, 1, 0, 2, 1, 100)));
        assert_eq!(seen(&both, 0).encoded_epoch(2, 1, 100), Some(2));
        let f = GuestFile {
            name: "big".into(),
            ino: 5,
            size: 100,
        };
        assert!(settled_encoded(&seen(&full, 0), &f, 2, 1, 0));
        // mirror copies still there, or not a newer epoch than asked for
        assert!(!settled_encoded(&seen(&full, 3), &f, 2, 1, 0));
        assert!(!settled_encoded(&seen(&full, 0), &f, 2, 1, 2));
    }

    #[test]
    fn shard_lengths_are_what_the_data_servers_sealed() {
        // Seen on a 4+2 cluster (1 MiB units) for 9 MiB + 12345 B and 3 MiB files.
        let big = 9 * (1 << 20) + 12345;
        let want = [
            3 << 20,
            2 * (1 << 20) + 12345,
            2 << 20,
            2 << 20,
            3 << 20,
            3 << 20,
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(shard_len(big, 4, 20, i as u32), *w, "shard {i}");
        }
        let mid = 3 << 20;
        let want = [1 << 20, 1 << 20, 1 << 20, 0, 1 << 20, 1 << 20];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(shard_len(mid, 4, 20, i as u32), *w, "shard {i}");
        }
        // 2+1: shard 0 gets the odd unit
        assert_eq!(shard_len(big, 2, 20, 0), 5 << 20);
        assert_eq!(shard_len(big, 2, 20, 1), 4 * (1 << 20) + 12345);
        assert_eq!(shard_len(big, 2, 20, 2), 5 << 20);
        // the data shards together hold the file
        for size in [0, 1, 4095, 1 << 20, big, mid, (8 << 20) + 1] {
            for k in [2, 4] {
                let sum: u64 = (0..k).map(|i| shard_len(size, k, 20, i)).sum();
                assert_eq!(sum, size, "size {size} k {k}");
            }
        }
    }

    #[test]
    fn the_erasure_coding_kinds_parse_and_promise_v41_v42() {
        use crate::server::ServerSpec;
        for (name, n) in [("cfs-cluster-ec3", 3), ("cfs-cluster-ec6", 6)] {
            let s = ServerSpec::parse(name).expect("kind");
            assert_eq!(s, ServerSpec::CfsClusterEc(n));
            assert_eq!(s.label(), name);
            assert!(s.is_cfs() && s.promised("4.1") && s.promised("4.2") && !s.promised("3"));
        }
    }

    #[test]
    fn data_directory_from_a_data_server_config() {
        // as `cfs cluster up` writes dsI.toml
        let t = "data = \"/c/cluster/ds2\"\nlisten = \"127.0.0.1:12402\"\nroles = [\"ds\"]\n[admin]\nlisten = \"127.0.0.1:13402\"\n";
        let s = crate::server::toml_string;
        assert_eq!(s(t, "data").as_deref(), Some("/c/cluster/ds2"));
        assert_eq!(s(t, "listen").as_deref(), Some("127.0.0.1:12402"));
        assert_eq!(s(t, "mds"), None);
    }

    #[test]
    fn file_list_and_code_choice() {
        let f = parse_files("files:big=12/9449817,small=14/102400").expect("list");
        assert_eq!(f.len(), 2);
        assert_eq!(
            (f[0].name.as_str(), f[0].ino, f[0].size),
            ("big", 12, 9449817)
        );
        assert!(parse_files("files:big=12").is_none());
        assert!(parse_files("other").is_none());
        assert_eq!(code_for(3), Some((2, 1)));
        assert_eq!(code_for(6), Some((4, 2)));
        assert_eq!(code_for(2), None);
        let small = GuestFile {
            name: "s".into(),
            ino: 1,
            size: 100 << 10,
        };
        let three = GuestFile {
            size: 3 << 20,
            ..small.clone()
        };
        assert!(!should_encode(&small, 1));
        assert!(should_encode(&three, 2));
        assert!(!should_encode(
            &GuestFile {
                size: 2 << 20,
                ..small
            },
            2
        ));
    }
}

/// Whether a kernel of this release reads striped flexfiles layouts (Linux 6.18+).
fn stripes(release: &str) -> bool {
    let mut v = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = v.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    let minor: u32 = v.next().and_then(|x| x.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 18)
}

#[cfg(test)]
mod stripe_tests {
    #[test]
    fn kernels_that_stripe() {
        assert!(super::stripes("7.2.13+deb14-amd64"));
        assert!(super::stripes("6.18.0"));
        assert!(!super::stripes("6.1.0-56-amd64"));
        assert!(!super::stripes("6.17.2"));
    }
}
