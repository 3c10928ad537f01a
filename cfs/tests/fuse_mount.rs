//! `cfs mount` (the FUSE client) against real servers on loopback: the guest scenarios run on
//! the host over the mount (`conformance/host/fuse-run.sh`), single node and 1 MDS + 3 DSs,
//! and a data server killed with SIGKILL in the middle of a write through the mount.
//! Needs root, /dev/fuse, fusermount3 (fuse3) and busybox (busybox-static).
mod common;

use common::cluster::Cluster;
use common::{random_bytes, BIN};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A `cfs mount` of `server` on `dir/mnt`; unmounted on drop.
struct Mount {
    at: PathBuf,
    server: String,
    log: PathBuf,
}

impl Mount {
    fn new(dir: &Path, server: &str, extra: &[&str]) -> Mount {
        let at = dir.join("mnt");
        std::fs::create_dir_all(&at).expect("mountpoint");
        let m = Mount {
            at,
            server: server.to_string(),
            log: dir.join("mount.log"),
        };
        m.mount(extra);
        m
    }

    fn mount(&self, extra: &[&str]) {
        let out = Command::new(BIN)
            .args(["mount", "--server", &self.server, "--log"])
            .arg(&self.log)
            .args(extra)
            .arg(&self.at)
            .output()
            .expect("run cfs mount");
        assert!(
            out.status.success(),
            "cfs mount failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn umount(&self) {
        let st = Command::new(BIN)
            .args(["umount"])
            .arg(&self.at)
            .status()
            .expect("run cfs umount");
        assert!(st.success(), "cfs umount failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new(BIN)
            .arg("umount")
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

fn run_scenarios(mode: &str, fabric: Option<&str>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/host/fuse-run.sh");
    let port = common::cluster::free_port_block();
    let out = Command::new("timeout")
        .arg("600")
        .arg(&script)
        .args([mode, "posix", "integrity", "bigdir", "locking"])
        .env("CFS_BIN", BIN)
        .env("QUICK", "1")
        .env("PORT", port.to_string())
        .env("FABRIC", fabric.unwrap_or(""))
        .output()
        .expect("run fuse-run.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "scenarios failed over cfs mount ({mode})"
    );
    assert!(
        text.contains("4 passed, 0 failed"),
        "not every scenario ran"
    );
    if mode == "cluster" {
        // Evidence, per scenario: the bytes went to the data servers and none through the MDS.
        let integrity = text
            .lines()
            .find(|l| l.contains("[cluster integrity] pNFS evidence"))
            .expect("evidence line");
        assert!(integrity.contains("the MDS wrote 0 B"), "{integrity}");
        assert!(!integrity.contains("data servers wrote 0 B"), "{integrity}");
    }
    if fabric.is_some() {
        let moved = text
            .lines()
            .rfind(|l| l.contains("fabric:"))
            .expect("fabric line");
        assert!(
            !moved.contains(" 0 B moved"),
            "nothing went over the fabric: {moved}"
        );
    }
}

#[test]
fn guest_scenarios_pass_over_cfs_mount_on_a_single_node() {
    run_scenarios("single", None);
}

#[test]
fn guest_scenarios_pass_over_cfs_mount_on_a_cluster_with_the_data_on_the_data_servers() {
    run_scenarios("cluster", None);
}

/// The same through libfabric's tcp provider: the data moves by RMA (needs libfabric1).
#[test]
fn guest_scenarios_pass_over_cfs_mount_with_the_data_over_the_fabric() {
    run_scenarios("cluster", Some("tcp"));
}

const MIB: usize = 1 << 20;

/// kill -9 of a data server holding the file while the application writes through the mount:
/// every write(2), fsync(2) and close(2) either succeeds or fails with an error; what then
/// reads back (after a remount, so from the servers) is the bytes written, never other ones.
#[test]
fn a_data_server_killed_during_a_fuse_write_gives_success_or_a_clean_error_never_wrong_bytes() {
    kill_a_data_server_during_a_write(None);
}

#[test]
fn a_data_server_killed_during_a_fuse_write_over_the_fabric_never_gives_wrong_bytes() {
    kill_a_data_server_during_a_write(Some("tcp"));
}

fn kill_a_data_server_during_a_write(fabric: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut up = vec!["--lease-seconds", "10"];
    let mut mount: Vec<&str> = Vec::new();
    if let Some(p) = fabric {
        up.extend(["--fabric", p]);
        mount.extend(["--fabric", p]);
    }
    let c = Cluster::start_with(dir.path(), &up);
    let m = Mount::new(dir.path(), &c.addr.to_string(), &mount);
    let total = 96 * MIB;
    let data = random_bytes(total, 0x5eed_f00d);
    let path = m.at.join("victim");
    let started = Instant::now();
    let mut f = std::fs::File::create(&path).expect("create through the mount");
    let mut errors = Vec::new();
    let mut killed = None;
    for (i, chunk) in data.chunks(MIB).enumerate() {
        if i == 32 {
            // A third in: make sure it is on the data servers, then kill one holding it.
            if let Err(e) = f.sync_all() {
                errors.push(format!("fsync before the kill: {e}"));
            }
            let role = c.writing_ds();
            c.kill9(&role);
            killed = Some(role);
        }
        if let Err(e) = f.write_all(chunk) {
            errors.push(format!("write of MiB {i}: {e}"));
            break;
        }
    }
    if let Err(e) = f.sync_all() {
        errors.push(format!("fsync: {e}"));
    }
    drop(f); // close(2); its error, if any, was fsync's
    let took = started.elapsed();
    eprintln!("wrote 96 MiB with {killed:?} killed in {took:?}; errors: {errors:?}");
    assert!(took < Duration::from_secs(240), "the write hung");
    for e in &errors {
        assert!(
            e.contains("Input/output error") || e.contains("No space"),
            "not a clean error: {e}"
        );
    }

    // From the servers, not the kernel's page cache.
    m.umount();
    if fabric.is_some() {
        // The client logs where the bytes went when it unmounts.
        let deadline = Instant::now() + Duration::from_secs(10);
        let moved = loop {
            let log = std::fs::read_to_string(&m.log).unwrap_or_default();
            if let Some(n) = log
                .lines()
                .rev()
                .filter_map(|l| l.split("fabric_bytes=").nth(1))
                .find_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            {
                break n;
            }
            assert!(Instant::now() < deadline, "no unmount record in the log");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(
            moved >= 32 * MIB as u64,
            "only {moved} bytes went over the fabric"
        );
    }
    m.mount(&mount);
    let mut got = Vec::new();
    std::fs::File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut got))
        .expect("read back through a fresh mount");
    if errors.is_empty() {
        assert_eq!(got.len(), total, "size after a successful write");
        assert!(got == data, "bytes differ after a write that succeeded");
    } else {
        assert!(got.len() <= total);
        for (i, (g, w)) in got.chunks(MIB).zip(data.chunks(MIB)).enumerate() {
            let zeros = g.iter().all(|&b| b == 0);
            assert!(
                g == &w[..g.len()] || zeros,
                "MiB {i} holds bytes that were never written"
            );
        }
    }
    // The bytes went to the data servers (both mirrors before the kill, the survivor and
    // its new partner after); a fallback through the MDS is allowed, but not all of it.
    let (w, _, st) = c.ds_bytes(total as u64, 0);
    eprintln!("DS write bytes {w}, MDS write bytes {}", st.mds_write_bytes);
    assert!(w >= total as u64, "the data servers took only {w} bytes");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("reopen");
    f.write_all(b"tail")
        .expect("the file is writable after the failover");
    f.sync_all().expect("fsync after the failover");
}
