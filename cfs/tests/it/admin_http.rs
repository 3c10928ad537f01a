//! The admin HTTP listener of a real `cfs server`: `/metrics` counters move by exactly what a
//! workload did, nothing is served without the token, eviction works, counters survive a clean
//! restart and restart from zero after kill -9, and a bad configuration is refused before
//! anything is touched, with a message that says what to do.
use crate::common;
use crate::http_client;

use common::{cfs, random_bytes, Server};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> http_client::Response {
    rt().block_on(http_client::request(
        addr,
        "GET",
        path,
        token,
        None,
        Duration::from_secs(10),
    ))
    .expect("admin listener answers")
}

/// Samples of one scrape: `name{labels}` → value.
fn scrape(addr: SocketAddr, token: &str) -> HashMap<String, f64> {
    let r = get(addr, "/metrics", Some(token));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("sample line");
            (k.to_string(), v.parse().expect("sample value"))
        })
        .collect()
}

fn v(m: &HashMap<String, f64>, k: &str) -> f64 {
    m.get(k).copied().unwrap_or(0.0)
}

struct Node {
    server: Server,
    admin: SocketAddr,
    token: String,
    config: String,
}

fn start(dir: &Path) -> Node {
    let data = dir.join("data");
    let server = Server::start(
        dir,
        Some(&format!(
            "data = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n",
            data.to_string_lossy()
        )),
    );
    let config = dir.join("cfs.toml").to_string_lossy().into_owned();
    attach(server, dir, config)
}

fn attach(server: Server, dir: &Path, config: String) -> Node {
    let deadline = Instant::now() + Duration::from_secs(20);
    let admin = loop {
        if let Ok(t) = std::fs::read_to_string(dir.join("data").join("admin.addr")) {
            break t.trim().parse().expect("admin.addr");
        }
        assert!(Instant::now() < deadline, "no admin.addr written");
        std::thread::sleep(Duration::from_millis(50));
    };
    let o = cfs(dir, &["admin", "token", "--config", &config]);
    assert!(o.ok(), "{}", o.stderr);
    let token = o.text().trim().to_string();
    assert_eq!(token.len(), 64);
    Node {
        server,
        admin,
        token,
        config,
    }
}

/// SIGTERM (a clean stop, which saves the counters) and wait.
fn stop_cleanly(s: &mut Server) {
    let mut c = s.child.take().expect("running");
    common::cluster::signal(c.id(), "-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_move_by_what_the_workload_did_and_need_the_token() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let mut n = start(dir);
    let server = n.server.server_arg();

    // Without the token, or with another, nothing but the console's empty page.
    for path in [
        "/metrics",
        "/api/v1/status",
        "/api/v1/clients",
        "/api/v1/top",
    ] {
        let r = get(n.admin, path, None);
        assert_eq!(r.status, 401, "{path}: {}", r.text());
        assert!(r
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer")));
        assert!(r.text().contains("cfs admin token"), "{}", r.text());
        let r = get(n.admin, path, Some(&"0".repeat(64)));
        assert_eq!(r.status, 401, "{path} with a wrong token");
    }
    let r = rt().block_on(http_client::request(
        n.admin,
        "POST",
        "/api/v1/clients/1/evict",
        None,
        None,
        Duration::from_secs(10),
    ));
    assert_eq!(r.unwrap().status, 401);
    let page = get(n.admin, "/", None);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("cfs console"));

    // The workload: five directories, a 3 MiB file up and down.
    let before = scrape(n.admin, &n.token);
    let o = cfs(
        dir,
        &["mkdir", "--server", &server, "/a", "/b", "/c", "/d", "/e"],
    );
    assert!(o.ok(), "{}", o.stderr);
    let data = random_bytes(3 << 20, 17);
    std::fs::write(dir.join("up.bin"), &data).unwrap();
    let up = dir.join("up.bin").to_string_lossy().into_owned();
    let down = dir.join("down.bin").to_string_lossy().into_owned();
    // Scraped while the copy runs: never going backwards.
    let scraper = {
        let (admin, token) = (n.admin, n.token.clone());
        std::thread::spawn(move || {
            let mut last = 0.0;
            for _ in 0..20 {
                let m = scrape(admin, &token);
                let w = v(&m, "cfs_nfs4_write_bytes_total");
                assert!(w >= last, "write bytes went back: {last} → {w}");
                last = w;
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let o = cfs(dir, &["put", "--server", &server, &up, "/a/f"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = cfs(dir, &["get", "--server", &server, "/a/f", &down]);
    assert!(o.ok(), "{}", o.stderr);
    scraper.join().expect("scrapes during the workload");
    assert_eq!(std::fs::read(dir.join("down.bin")).unwrap(), data);
    let after = scrape(n.admin, &n.token);
    let d = |k: &str| v(&after, k) - v(&before, k);

    assert_eq!(d("cfs_nfs4_write_bytes_total"), (3 << 20) as f64);
    assert_eq!(d("cfs_nfs4_read_bytes_total"), (3 << 20) as f64);
    assert_eq!(
        d("cfs_nfs4_operation_duration_seconds_count{op=\"CREATE\"}"),
        5.0,
        "one CREATE per mkdir"
    );
    assert!(d("cfs_nfs4_operation_duration_seconds_count{op=\"WRITE\"}") >= 3.0);
    assert_eq!(d("cfs_nfs4_operation_errors_total{op=\"WRITE\"}"), 0.0);
    // mkdir ×5, OPEN(create), the size: each one durable batch or more, each one fdatasync.
    assert!(d("cfs_mds_log_durable_commits_total") >= 6.0);
    assert!(d("cfs_mds_log_fsync_duration_seconds_count") >= 6.0);
    assert!(d("cfs_mds_rpc_received_bytes_total") > (3 << 20) as f64);
    assert!(d("cfs_mds_rpc_sent_bytes_total") > (3 << 20) as f64);
    assert!(v(&after, "process_cpu_seconds_total") > 0.0);
    // Histogram buckets are cumulative and end with the count.
    assert_eq!(
        v(
            &after,
            "cfs_nfs4_operation_duration_seconds_bucket{op=\"CREATE\",le=\"+Inf\"}"
        ),
        v(
            &after,
            "cfs_nfs4_operation_duration_seconds_count{op=\"CREATE\"}"
        )
    );

    // A client holding an open shows in the client list and is evicted by its id.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(async {
        let c = client::Client::connect(client::ClientConfig::new(n.server.addr))
            .await
            .expect("connect");
        let f = c
            .open_path("/a/f", proto::nfs4::OPEN4_SHARE_ACCESS_READ, None)
            .await
            .expect("open");
        (c, f)
    });
    let o = cfs(dir, &["admin", "clients", "--json", "--config", &n.config]);
    assert!(o.ok(), "{}", o.stderr);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let holder = list["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["opens"] == 1)
        .unwrap_or_else(|| panic!("no client holds an open: {list}"))
        .clone();
    assert_eq!(holder["address"], "127.0.0.1");
    assert_eq!(v(&scrape(n.admin, &n.token), "cfs_mds_opens"), 1.0);
    let id = holder["id"].as_str().unwrap();
    let o = cfs(
        dir,
        &["admin", "client", "evict", id, "--config", &n.config],
    );
    assert!(o.ok(), "{}", o.stderr);
    assert!(o.text().contains(id), "{}", o.text());
    let m = scrape(n.admin, &n.token);
    assert_eq!(v(&m, "cfs_mds_opens"), 0.0);
    let o = cfs(dir, &["admin", "clients", "--json", "--config", &n.config]);
    assert!(
        !o.text().contains(id),
        "evicted client still listed: {}",
        o.text()
    );
    let o = cfs(
        dir,
        &["admin", "client", "evict", id, "--config", &n.config],
    );
    assert!(!o.ok() && o.stderr.contains("no client"), "{}", o.stderr);
    drop(c);
    drop(rt);

    // A clean restart carries the counters on; a crash restarts them from zero.
    let total = v(&m, "cfs_nfs4_write_bytes_total");
    let since = v(&m, "cfs_counters_since_timestamp_seconds");
    stop_cleanly(&mut n.server);
    std::fs::remove_file(dir.join("data").join("admin.addr")).unwrap();
    n.server.restart();
    let mut n = attach(n.server, dir, n.config);
    let m = scrape(n.admin, &n.token);
    assert_eq!(v(&m, "cfs_nfs4_write_bytes_total"), total);
    assert_eq!(
        v(&m, "cfs_counters_since_timestamp_seconds").floor(),
        since.floor()
    );
    n.server.kill();
    std::fs::remove_file(dir.join("data").join("admin.addr")).unwrap();
    n.server.restart();
    let n = attach(n.server, dir, n.config);
    let m = scrape(n.admin, &n.token);
    assert_eq!(v(&m, "cfs_nfs4_write_bytes_total"), 0.0);
    assert!(v(&m, "cfs_counters_since_timestamp_seconds") > since);

    // A single node keeps file data itself: no data server to drain, and the answer says so.
    let o = cfs(
        dir,
        &[
            "admin",
            "node",
            "drain",
            "00000000000000ab",
            "--config",
            &n.config,
        ],
    );
    assert!(!o.ok());
    assert!(
        o.stderr.contains("404") && o.stderr.contains("nothing to drain"),
        "{}",
        o.stderr
    );
}

#[test]
fn bad_configurations_are_refused_before_anything_is_touched() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let run = |args: &[&str]| cfs(dir, args);
    let cfg = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let fresh = dir.join("fresh").to_string_lossy().into_owned();

    let c = cfg("lease0.toml", "lease_seconds = 0\n");
    let o = run(&["server", "--config", &c, "--data", &fresh, "--check-config"]);
    assert!(!o.ok());
    assert!(
        o.stderr.contains("lease_seconds = 0") && o.stderr.contains("at least 5"),
        "{}",
        o.stderr
    );

    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = run(&[
        "server",
        "--data",
        &file.to_string_lossy(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!o.ok());
    assert!(
        o.stderr.contains("it is a file, not a directory"),
        "{}",
        o.stderr
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let o = run(&["server", "--data", &fresh, "--listen", &port]);
    assert!(!o.ok());
    assert!(
        o.stderr.contains("is busy") && o.stderr.contains("ss -ltnp"),
        "{}",
        o.stderr
    );
    assert!(
        !dir.join("fresh").exists(),
        "the data directory was created before the port was checked"
    );

    let c = cfg(
        "admin-busy.toml",
        &format!("[admin]\nlisten = \"{port}\"\n"),
    );
    let o = run(&[
        "server",
        "--config",
        &c,
        "--data",
        &fresh,
        "--listen",
        "127.0.0.1:0",
        "--check-config",
    ]);
    assert!(
        !o.ok() && o.stderr.contains("the admin address"),
        "{}",
        o.stderr
    );

    let c = cfg(
        "ok.toml",
        "[[export]]\npath = \"/projects\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let o = run(&[
        "server",
        "--config",
        &c,
        "--data",
        &fresh,
        "--listen",
        "127.0.0.1:0",
        "--check-config",
    ]);
    assert!(o.ok(), "{}", o.stderr);
    assert!(o.text().starts_with("config OK"), "{}", o.text());
    assert!(
        !dir.join("fresh").exists(),
        "--check-config created the data directory"
    );

    // The export does not exist in the (new, empty) file system: refused at start.
    let o = run(&[
        "server",
        "--config",
        &c,
        "--data",
        &fresh,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!o.ok());
    assert!(
        o.stderr.contains("export \"/projects\" does not exist")
            && o.stderr.contains("cfs mkdir -p /projects"),
        "{}",
        o.stderr
    );
    drop(busy);
}

#[test]
fn help_has_examples_and_the_man_page_is_current() {
    let t = tempfile::tempdir().unwrap();
    for sub in [
        &["server"][..],
        &["server", "join"],
        &["cluster", "up"],
        &["admin", "status"],
        &["admin", "top"],
        &["admin", "clients"],
        &["admin", "node", "drain"],
        &["admin", "client", "evict"],
        &["admin", "rmtree"],
        &["admin", "token"],
        &["ls"],
        &["put"],
        &["get"],
        &["cat"],
        &["mkdir"],
        &["rm"],
        &["stat"],
        &["mv"],
    ] {
        let mut args = sub.to_vec();
        args.push("--help");
        let o = cfs(t.path(), &args);
        assert!(o.ok(), "{sub:?}: {}", o.stderr);
        assert!(
            o.text().contains("Example"),
            "cfs {sub:?} --help has no example:\n{}",
            o.text()
        );
    }
    let o = cfs(t.path(), &["man"]);
    assert!(o.ok());
    let committed = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/man/cfs.1"))
        .expect("dist/man/cfs.1 (regenerate: cfs man > dist/man/cfs.1)");
    assert!(
        committed == o.stdout,
        "dist/man/cfs.1 is stale: regenerate it with `target/release/cfs man > dist/man/cfs.1`"
    );
}
