//! Repair and scrub of erasure-coded files (issue 13), on real processes (`cfs cluster up`):
//! - kill -9 of two of the six data servers of a 4+2 file: reads stay right; their disks wiped
//!   and the servers restarted (they come back as new, empty servers), the MDS declares the old
//!   ones lost after `--lost-after` and rebuilds their shards on the new ones, from the other
//!   four; then two *other* servers can be lost and the file still reads right, which it could
//!   not without the repair. A mirrored file with a copy on a lost server gets it back.
//! - a flipped byte in a shard on a data server's disk is never served; scrub finds it, the MDS
//!   has the shard rebuilt in place, and the byte on disk is right again.
use crate::common;

use common::cluster::Cluster;
use common::ec::{chunk_file, data_status, read_file, wait_for, write_file};
use common::{random_bytes, KillOnDrop, SERIAL};
use std::path::PathBuf;

fn roles(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("ds{i}")).collect()
}

/// Shard header files (`shards/<object id>`) of each data server.
fn shard_headers(cl: &Cluster, n: usize) -> Vec<Vec<PathBuf>> {
    roles(n)
        .iter()
        .map(|r| {
            let mut v: Vec<PathBuf> = std::fs::read_dir(cl.ds_dir(r).join("shards"))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.path())
                        .filter(|p| !p.to_string_lossy().ends_with(".tmp"))
                        .collect()
                })
                .unwrap_or_default();
            v.sort();
            v
        })
        .collect()
}

fn counts(h: &[Vec<PathBuf>]) -> Vec<usize> {
    h.iter().map(|v| v.len()).collect()
}

/// Prints a log when the test fails (the cluster's directory goes with the test).
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", std::fs::read_to_string(&self.0).unwrap_or_default());
        }
    }
}

/// The data servers (roles) whose chunk store holds chunk files of object `id`.
fn copy_holders(cl: &Cluster, id: u64) -> Vec<String> {
    roles(6)
        .into_iter()
        .filter(|r| {
            let (path, _) = chunk_file(cl, r, id);
            path.parent()
                .and_then(|d| std::fs::read_dir(d).ok())
                .is_some_and(|mut d| d.next().is_some())
        })
        .collect()
}

fn mds_log(cl: &Cluster) -> String {
    std::fs::read_to_string(cl.dir.join("cluster").join("mds.log")).unwrap_or_default()
}

#[test]
fn two_lost_servers_of_a_four_two_file_are_rebuilt_on_wiped_replacements() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(t.path(), 6, &["--encode-after", "1", "--lost-after", "3"]);
    let _log = LogOnPanic(cl.dir.join("cluster").join("mds.log"));
    // Two whole 4 MiB stripes and a partial one.
    let data = random_bytes(9 * (1 << 20) + 777, 0xec16);
    write_file(&cl, "/f", &data);
    // A file too small to encode stays mirrored on two of the six.
    let small = random_bytes(1000, 0xec18);
    let small_ino = write_file(&cl, "/small", &small);
    wait_for(
        60,
        "the file encoded 4+2, one shard per data server",
        || counts(&shard_headers(&cl, 6)) == vec![1; 6],
    );
    // The two lost: one holder of the small file's copies and one other server, so the small
    // file keeps one copy and must get its second back.
    let holders = copy_holders(&cl, small_ino);
    assert_eq!(holders.len(), 2, "the small file is mirrored: {holders:?}");
    let other = roles(6)
        .into_iter()
        .find(|r| !holders.contains(r))
        .expect("a server without the small file");
    let lost = [holders[0].clone(), other];

    // Any two lost: the right bytes, rebuilt from the other four.
    for r in &lost {
        cl.kill9(r);
    }
    assert_eq!(read_file(&cl, "/f", data.len()), data, "two servers down");

    // Their disks are gone: the same configs start empty servers with new identities.
    for r in &lost {
        std::fs::remove_dir_all(cl.ds_dir(r)).expect("wipe");
    }
    let _new: Vec<KillOnDrop> = lost.iter().map(|r| KillOnDrop(cl.start_ds(r))).collect();
    wait_for(
        90,
        "the lost servers' shards rebuilt on the new ones",
        || {
            counts(&shard_headers(&cl, 6)) == vec![1; 6]
                && mds_log(&cl)
                    .matches("shard rebuilt on another data server")
                    .count()
                    >= 2
        },
    );
    let log = mds_log(&cl);
    assert!(
        log.matches("declared lost").count() >= 2,
        "the MDS did not declare both old servers lost"
    );
    wait_for(30, "the file at full redundancy in the status", || {
        let s = data_status(&cl);
        s["encoded_files"] == 1 && s["degraded_encoded_bytes"] == 0
    });
    assert_eq!(read_file(&cl, "/f", data.len()), data, "repaired");
    // The mirrored file lost a copy with the lost server: it has two again.
    wait_for(60, "the small file's second copy made again", || {
        copy_holders(&cl, small_ino).len() == 2
    });
    assert_eq!(read_file(&cl, "/small", small.len()), small);

    // Full redundancy again: two *other* servers can go. Without the repair only two of the
    // six shards would be left.
    for r in roles(6).iter().filter(|r| !lost.contains(r)).take(2) {
        cl.kill9(r);
    }
    assert_eq!(
        read_file(&cl, "/f", data.len()),
        data,
        "two more servers down after the repair"
    );
}

fn byte_at(path: &std::path::Path, at: u64) -> u8 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).expect("open chunk file");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    b[0]
}

#[test]
fn a_flipped_byte_in_a_shard_is_never_served_and_scrub_has_it_rebuilt() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(t.path(), 3, &["--encode-after", "1", "--scrub-every", "3"]);
    let data = random_bytes(6 * (1 << 20) + 4321, 0xec17);
    write_file(&cl, "/f", &data);
    wait_for(60, "the file encoded 2+1", || {
        counts(&shard_headers(&cl, 3)) == vec![1; 3]
    });
    let header = shard_headers(&cl, 3)[0][0].clone();
    let id = u64::from_str_radix(
        header.file_name().and_then(|n| n.to_str()).expect("name"),
        16,
    )
    .expect("a shard header is named by its object id");
    let (path, at) = chunk_file(&cl, "ds1", id);
    let at = at + 5000;
    let good = byte_at(&path, at);
    let flip = || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open shard chunk file");
        f.write_all_at(&[good ^ 0x20], at).expect("flip");
        f.sync_all().expect("sync");
    };
    let repairs = || mds_log(&cl).matches("bad shard rebuilt in place").count();
    // Nobody reads it: scrub finds it.
    flip();
    // About 4 s (a scrub pass every 3 s); a report the repair task dropped while the encoder
    // still held the file waited for its next rescan, a minute.
    wait_for(
        30,
        "scrub finds the block and the MDS has the shard rebuilt",
        || repairs() >= 1,
    );
    assert_eq!(byte_at(&path, at), good, "the byte on disk is right again");
    let ds1_log =
        std::fs::read_to_string(cl.dir.join("cluster").join("ds1.log")).unwrap_or_default();
    assert!(
        ds1_log.contains("scrub pass found objects failing verification"),
        "the data server's scrub did not report it"
    );
    assert!(
        mds_log(&cl).contains("shard failed verification on a data server"),
        "no report reached the MDS"
    );
    // Flipped again and read at once: never served (the bytes come from the other shards),
    // and rebuilt again, whoever finds it first.
    flip();
    assert_eq!(read_file(&cl, "/f", data.len()), data, "a corrupt shard");
    wait_for(60, "the shard rebuilt a second time", || repairs() >= 2);
    assert_eq!(byte_at(&path, at), good);
    // The rebuilt shard serves: with another server down, it is one of the two left.
    let other = if shard_headers(&cl, 3)[1].is_empty() {
        "ds3"
    } else {
        "ds2"
    };
    cl.kill9(other);
    assert_eq!(read_file(&cl, "/f", data.len()), data, "after the repair");
}
