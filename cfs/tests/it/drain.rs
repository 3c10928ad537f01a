//! `cfs admin node drain` on a real cluster (1 MDS + 4 data servers, separate processes): the
//! drained data server gets no new file, every file it held gets its two mirrors elsewhere, the
//! drain survives a kill -9 of the MDS, and once it says "drained" the data server can be
//! killed without any file losing a byte. The API refuses an unknown id (404) and a missing
//! token (401).
use crate::common;
use crate::http_client;

use client::{CreateMode, SetAttrs, StableHow4};
use common::cluster::Cluster;
use common::{cfs, random_bytes};
use proto::nfs4::{OPEN4_SHARE_ACCESS_BOTH, OPEN4_SHARE_ACCESS_READ};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn create() -> Option<CreateMode> {
    Some(CreateMode::Unchecked(SetAttrs {
        mode: Some(0o644),
        size: Some(0),
        ..Default::default()
    }))
}

/// Writes `files` (path, content) through layouts, durably.
fn write_files(cl: &Cluster, files: &[(String, Vec<u8>)]) {
    let c = cl.client(true);
    cl.rt
        .block_on(async {
            for (path, data) in files {
                let f = c.open_path(path, OPEN4_SHARE_ACCESS_BOTH, create()).await?;
                c.write_all(&f, 0, data, StableHow4::FileSync4).await?;
                c.commit_file(&f).await?;
                c.close(&f).await?;
            }
            client::Result::Ok(())
        })
        .unwrap_or_else(|e: client::Error| panic!("write files: {e}\n{}", cl.log_tail()));
    let _ = cl.rt.block_on(c.shutdown());
}

/// Every file as a fresh client reads it through layouts, compared byte for byte.
fn check_files(cl: &Cluster, files: &[(String, Vec<u8>)]) {
    let c = cl.client(true);
    for (path, want) in files {
        let got = cl.rt.block_on(async {
            let f = c.open_path(path, OPEN4_SHARE_ACCESS_READ, None).await?;
            let (data, _) = c.read_full(&f, 0, f.stat.size as u32).await?;
            c.close(&f).await?;
            client::Result::Ok(data)
        });
        let got = got
            .unwrap_or_else(|e: client::Error| panic!("read {path} back: {e}\n{}", cl.log_tail()));
        assert_eq!(got.len(), want.len(), "{path}: size");
        assert!(got == *want, "{path}: content differs");
    }
    let _ = cl.rt.block_on(c.shutdown());
}

/// Chunk files in a data server's store (every file it holds a copy of has at least one).
fn chunk_files(dir: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() {
                            walk(&p)
                        } else {
                            1
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&dir.join("chunks").join("objects"))
}

struct Admin {
    addr: SocketAddr,
    token: String,
    config: String,
}

impl Admin {
    fn of(cl: &Cluster) -> Admin {
        let (addr, token) = cl.admin();
        Admin {
            addr,
            token,
            config: cl.mds_toml(),
        }
    }

    fn call(&self, method: &str, path: &str, token: bool) -> http_client::Response {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(http_client::request(
            self.addr,
            method,
            path,
            token.then_some(self.token.as_str()),
            None,
            Duration::from_secs(10),
        ))
        .expect("admin listener answers")
    }

    fn status(&self) -> serde_json::Value {
        let r = self.call("GET", "/api/v1/status", true);
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_str(&r.text()).expect("status JSON")
    }

    /// The data server's row of the status, if it is registered.
    fn ds(&self, id: &str) -> Option<serde_json::Value> {
        self.status()["data_servers"]
            .as_array()?
            .iter()
            .find(|d| d["id"] == id)
            .cloned()
    }

    /// The data server's row once a heartbeat it sent after this call has arrived: its
    /// counters then count everything it did before the call. (Was a fixed 3 s pause.)
    fn after_next_heartbeat(&self, id: &str) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            // Taken before the query: a heartbeat `silent_ms` old at the MDS came after `t0`.
            let since = t0.elapsed();
            let row = self.ds(id).expect("DS row");
            let silent = Duration::from_millis(row["silent_ms"].as_u64().unwrap_or(u64::MAX));
            if silent < since {
                return row;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no heartbeat from {id} in 60 s: {row}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Roles and ids of the data servers, from `cfs admin status --json`.
fn roles(cl: &Cluster) -> Vec<(String, String)> {
    let st = cl.status().expect("status");
    st.data_servers
        .iter()
        .map(|d| (cl.role_of(d.ds_id), format!("{:016x}", d.ds_id)))
        .collect()
}

#[test]
fn a_drained_data_server_holds_nothing_and_can_go() {
    let t = tempfile::tempdir().unwrap();
    let cl = Cluster::start_sized(t.path(), 4, &[]);
    let admin = Admin::of(&cl);

    // Files of known content, 0 to 3 MiB, spread over the four data servers.
    let before: Vec<(String, Vec<u8>)> = (0..12u64)
        .map(|i| {
            let len = match i % 4 {
                0 => 0,
                1 => 1000 + i as usize,
                2 => (1 << 20) + 7,
                _ => (3 << 20) - 5,
            };
            (format!("/before{i}"), random_bytes(len, 100 + i))
        })
        .collect();
    write_files(&cl, &before);

    // The data server holding the most copies is drained.
    let ids = roles(&cl);
    assert_eq!(ids.len(), 4, "{}", cl.admin_status());
    let (role, id) = ids
        .iter()
        .max_by_key(|(r, _)| chunk_files(&cl.ds_dir(r)))
        .cloned()
        .unwrap();
    let held = chunk_files(&cl.ds_dir(&role));
    assert!(held > 0, "no copies on {role}");

    // The API's refusals: no token, an id no data server has.
    let r = admin.call("POST", &format!("/api/v1/data-servers/{id}/drain"), false);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = admin.call("POST", "/api/v1/data-servers/00000000deadbeef/drain", true);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("cfs admin status"), "{}", r.text());
    let o = cfs(
        &cl.dir,
        &[
            "admin",
            "node",
            "drain",
            "00000000deadbeef",
            "--config",
            &admin.config,
        ],
    );
    assert!(
        !o.ok(),
        "draining an unknown data server succeeded: {}",
        o.text()
    );
    assert_eq!(
        admin.ds(&id).expect("the DS in the status")["state"],
        "up",
        "a refused drain changed the state"
    );

    // The drain, through the CLI; then the MDS is killed before it can have moved much.
    let o = cfs(
        &cl.dir,
        &[
            "admin",
            "node",
            "drain",
            &id,
            "--json",
            "--config",
            &admin.config,
        ],
    );
    assert!(o.ok(), "{}{}", o.text(), o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.text().trim()).expect("drain JSON");
    assert_eq!(v["draining"], id.as_str());
    let first_count = v["files_left"].as_u64().expect("files_left");
    assert!(first_count > 0, "{v}");
    cl.kill9("mds");
    let _mds = cl.restart_mds();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cl.status().map(|s| s.data_servers.len()) != Some(4) {
        assert!(
            Instant::now() < deadline,
            "DSs not back with the MDS in 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let row = admin
        .ds(&id)
        .expect("the DS in the status after the restart");
    assert!(
        row["state"] == "draining" || row["state"] == "drained",
        "the drain did not survive the MDS's restart: {row}"
    );

    // Files created during the drain never land on the drained data server: its write
    // counter (carried by its heartbeats) stays where it was.
    let writes = |a: &Admin| a.after_next_heartbeat(&id)["write_ops"].as_u64().unwrap();
    let writes_before = writes(&admin);
    let during: Vec<(String, Vec<u8>)> = (0..8u64)
        .map(|i| {
            (
                format!("/during{i}"),
                random_bytes(200_000 + i as usize, 200 + i),
            )
        })
        .collect();
    write_files(&cl, &during);

    // Drained, in bounded time.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let row = admin.ds(&id).expect("DS row");
        if row["state"] == "drained" {
            assert_eq!(row["files_left"], 0, "{row}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained in 90 s: {row}\n{}",
            cl.admin_status()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // `--wait` on a drained data server returns at once, and says so.
    let o = cfs(
        &cl.dir,
        &[
            "admin",
            "node",
            "drain",
            &id,
            "--wait",
            "--config",
            &admin.config,
        ],
    );
    assert!(o.ok(), "{}", o.stderr);
    assert!(
        o.stderr.contains("drained, it can be stopped"),
        "{}",
        o.stderr
    );
    let text = cl.admin_status();
    assert!(
        text.contains(&format!("drain of {id}: drained")),
        "`cfs admin status` does not say so:\n{text}"
    );
    assert_eq!(
        writes(&admin),
        writes_before,
        "a file created during the drain was written to the drained data server"
    );
    // No placement names it, and its copies are gone from its store.
    assert_eq!(
        chunk_files(&cl.ds_dir(&role)),
        0,
        "copies left on the drained data server"
    );
    let st = admin.status();
    assert_eq!(st["mds"]["degraded_files"], 0, "{st}");

    // A drain can be cancelled: the mark goes, new files may land on it again.
    let drain_args = |extra: &[&str]| {
        let mut a = vec![
            "admin",
            "node",
            "drain",
            id.as_str(),
            "--config",
            &admin.config,
        ];
        a.extend_from_slice(extra);
        cfs(&cl.dir, &a)
    };
    let r = admin.call("DELETE", &format!("/api/v1/data-servers/{id}/drain"), false);
    assert_eq!(r.status, 401, "{}", r.text());
    let o = drain_args(&["--cancel"]);
    assert!(o.ok(), "{}{}", o.text(), o.stderr);
    assert!(o.text().contains("cancelled"), "{}", o.text());
    let row = admin.ds(&id).expect("DS row after the cancel");
    assert_eq!(row["state"], "up", "{row}");
    assert!(
        !cl.admin_status().contains(&format!("drain of {id}")),
        "`cfs admin status` still lists the drain:\n{}",
        cl.admin_status()
    );
    // Cancelling what is not being drained says so (409), and the CLI fails.
    let r = admin.call("DELETE", &format!("/api/v1/data-servers/{id}/drain"), true);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("not being drained"), "{}", r.text());
    assert!(!drain_args(&["--cancel"]).ok());
    let writes_cancelled = writes(&admin);
    let after: Vec<(String, Vec<u8>)> = (0..16u64)
        .map(|i| {
            (
                format!("/after{i}"),
                random_bytes(100_000 + i as usize, 300 + i),
            )
        })
        .collect();
    write_files(&cl, &after);
    let deadline = Instant::now() + Duration::from_secs(15);
    while writes(&admin) == writes_cancelled {
        assert!(
            Instant::now() < deadline,
            "no file created after the cancel was written to the data server"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // It can go: every file reads back byte for byte without it.
    cl.kill9(&role);
    check_files(&cl, &before);
    check_files(&cl, &during);
}
