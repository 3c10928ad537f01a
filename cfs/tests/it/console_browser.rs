//! The web console in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver is HTTP and JSON), against a running 1 MDS + 3 data server cluster. The figures
//! the page shows must be the server's; Evict, Drain and a snapshot's Delete go through their
//! confirmation dialogs (a snapshot is taken from its form, and restored through its prompt); a
//! screenshot of the overview is saved (`target/console.png`). And the operator's view of a
//! 3 MDS + 6 data server cluster, healthy and with a metadata node killed (two screenshots).
//! And the object store's outage alert, from a single node whose bucket is unreachable.
//!
//! Needs Debian's `chromium` and `chromium-driver`, which `conformance setup` (the first step of
//! the test command) installs; without them it fails, saying so.
use crate::common;
use crate::http_client;

use common::cluster::Cluster;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FLAGS: [&str; 9] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1366,1100",
];

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let r = rt()
        .block_on(http_client::request(
            addr,
            method,
            path,
            token,
            body.as_deref(),
            Duration::from_secs(60),
        ))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

/// chromedriver on a free port; killed by PID on drop.
struct Driver {
    child: Child,
    addr: SocketAddr,
    session: String,
    /// Chromium's profile, removed after the browser is (fields drop after `drop`).
    _profile: tempfile::TempDir,
}

impl Driver {
    /// A browser on the console at `admin`, signed in with `token`.
    fn console(admin: SocketAddr, token: &str) -> Driver {
        let d = Driver::start(tempfile::tempdir().unwrap());
        d.cmd(
            "POST",
            "url",
            Some(json!({ "url": format!("http://{admin}/#token={token}") })),
        );
        d
    }

    fn start(profile: tempfile::TempDir) -> Driver {
        let port = common::free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install --no-remove chromium chromium-driver)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut d = Driver {
            child,
            addr,
            session: String::new(),
            _profile: profile,
        };
        let (st, v) = http(
            addr,
            "POST",
            "/session",
            None,
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
                "unhandledPromptBehavior": "ignore",
            }}})),
        );
        assert_eq!(st, 200, "new session: {v}");
        d.session = v["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        d
    }

    fn try_cmd(&self, method: &str, what: &str, body: Option<Value>) -> (u16, Value) {
        let (st, v) = http(
            self.addr,
            method,
            &format!("/session/{}/{what}", self.session),
            None,
            body.or(Some(json!({}))).filter(|_| method == "POST"),
        );
        (st, v["value"].clone())
    }

    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        let (st, v) = self.try_cmd(method, what, body);
        assert_eq!(st, 200, "{method} {what}: {v}");
        v
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Clicks the element matching `css`, then accepts the confirmation dialog it opens.
    fn click_and_confirm(&self, css: &str) -> String {
        self.click(css);
        let text = self.cmd("GET", "alert/text", None);
        self.cmd("POST", "alert/accept", None);
        text.as_str().unwrap_or_default().to_string()
    }

    /// Clicks the element matching `css`, types `answer` into the prompt it opens and
    /// accepts it; returns the prompt's text.
    fn click_and_answer(&self, css: &str, answer: &str) -> String {
        self.click(css);
        let text = self.cmd("GET", "alert/text", None);
        self.cmd("POST", "alert/text", Some(json!({ "text": answer })));
        self.cmd("POST", "alert/accept", None);
        text.as_str().unwrap_or_default().to_string()
    }

    fn click(&self, css: &str) {
        // The page redraws its tables every 2 s; an element found just before a redraw is
        // stale by the click, so find it again.
        for attempt in 0.. {
            let e = self.cmd(
                "POST",
                "element",
                Some(json!({"using": "css selector", "value": css})),
            );
            let id = e
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("no element {css}: {e}"))
                .to_string();
            let (st, v) = self.try_cmd("POST", &format!("element/{id}/click"), None);
            if st == 200 {
                return;
            }
            assert!(
                attempt < 10 && v["error"] == "stale element reference",
                "click {css}: {v}"
            );
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = rt().block_on(http_client::request(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
                None,
                Duration::from_secs(20),
            ));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => 0,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for q in bytes.chunks(4) {
        let n = q.iter().take_while(|&&c| c != b'=').count();
        let v = q
            .iter()
            .take(n)
            .fold(0u32, |a, &c| a << 6 | u32::from(val(c)))
            << (6 * (4 - n));
        out.extend_from_slice(&v.to_be_bytes()[1..n]);
    }
    out
}

#[test]
fn the_console_shows_what_the_servers_say() {
    let t = tempfile::tempdir().unwrap();
    let cl = Cluster::start(t.path());
    let (admin, token) = cl.admin();

    // Some data on the data servers, and a client that stays, holding an open.
    let data = common::random_bytes(6 << 20, 5);
    let src = t.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let server = cl.addr.to_string();
    let o = common::cfs(
        t.path(),
        &["put", "--server", &server, &src.to_string_lossy(), "/six"],
    );
    assert!(o.ok(), "{}", o.stderr);
    let holder = cl.rt.block_on(async {
        let c = client::Client::connect(client::ClientConfig::new(cl.addr))
            .await
            .expect("connect");
        let f = c
            .open_path("/six", proto::nfs4::OPEN4_SHARE_ACCESS_READ, None)
            .await
            .expect("open");
        (c, f)
    });
    // Heartbeats carry the data servers' counters: wait until all of the upload shows.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, s) = http(admin, "GET", "/api/v1/status", Some(&token), None);
        let written: u64 = s["data_servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["write_bytes"].as_u64().unwrap())
            .sum();
        if written >= 2 * data.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "upload never showed on the data servers: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Traffic over a few of the console's 5 s samples, so its charts have a shape.
    for i in 0..3 {
        std::thread::sleep(Duration::from_secs(4));
        let o = common::cfs(
            t.path(),
            &[
                "put",
                "--server",
                &server,
                &src.to_string_lossy(),
                &format!("/more{i}"),
            ],
        );
        assert!(o.ok(), "{}", o.stderr);
        let o = common::cfs(
            t.path(),
            &["get", "--server", &server, &format!("/more{i}"), "-"],
        );
        assert!(o.ok(), "{}", o.stderr);
    }
    std::thread::sleep(Duration::from_secs(5));
    let (_, status) = http(admin, "GET", "/api/v1/status", Some(&token), None);

    let d = Driver::console(admin, &token);
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let v = d.js(
            "if (!document.body.dataset.loaded) return null;
             const f = {};
             document.querySelectorAll('[data-figure]').forEach(e => { if (!e.closest('tr')) f[e.dataset.figure] = e.textContent; });
             return { figures: f,
                      ds: [...document.querySelectorAll('tr[data-ds]')].map(r => [r.dataset.ds, r.children[1].textContent]),
                      clients: [...document.querySelectorAll('tr[data-client]')].map(r => r.dataset.client),
                      tokenInUrl: location.href.includes('token') };",
        );
        if !v.is_null() && v["ds"].as_array().is_some_and(|a| a.len() == 3) {
            break v;
        }
        assert!(Instant::now() < deadline, "the console never loaded: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let m = &status["mds"];
    let f = &shown["figures"];
    for k in [
        "clients",
        "sessions",
        "opens",
        "locks",
        "delegations",
        "layouts",
    ] {
        assert_eq!(
            f[k].as_str(),
            Some(m[k].to_string().as_str()),
            "{k}: page {f} server {m}"
        );
    }
    assert_eq!(f["ds_up"], "3/3");
    assert_eq!(f["grace"], if m["in_grace"] == true { "yes" } else { "no" });
    let mut page_ds: Vec<(String, String)> = serde_json::from_value(shown["ds"].clone()).unwrap();
    let mut server_ds: Vec<(String, String)> = status["data_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap().to_string(),
                d["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    page_ds.sort();
    server_ds.sort();
    assert_eq!(page_ds, server_ds);
    assert_eq!(
        shown["tokenInUrl"], false,
        "the token stays out of the address bar"
    );
    let (_, clients) = http(admin, "GET", "/api/v1/clients", Some(&token), None);
    let ids: Vec<String> = clients["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    let page_clients: Vec<String> = serde_json::from_value(shown["clients"].clone()).unwrap();
    assert_eq!(page_clients, ids);

    // Usage by export: the page's row for "/" and for all exports are the API's figures
    // (the pass runs every few seconds: compared once both show the last upload).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = d.js(
            "return [...document.querySelectorAll('tr[data-export]')].map(r => [r.dataset.export,
               [...r.querySelectorAll('[data-usage]')].map(c => c.dataset.bytes ?? c.textContent)]);",
        );
        let (_, s) = http(admin, "GET", "/api/v1/status", Some(&token), None);
        let u = &s["mds"]["usage"];
        let row = |v: &Value| {
            [
                "files",
                "logical_bytes",
                "after_dedup_bytes",
                "after_compression_bytes",
                "raw_bytes",
            ]
            .map(|k| v[k].to_string())
            .to_vec()
        };
        let want = json!([["/", row(&u["exports"][0])], ["*", row(&u["all_exports"])]]);
        let logical = u["exports"][0]["logical_bytes"].as_u64();
        if page == want && logical == Some(4 * data.len() as u64) {
            // Mirrored files: nothing reduced, two copies each.
            assert_eq!(u["exports"][0]["after_dedup_bytes"].as_u64(), logical);
            assert_eq!(
                u["exports"][0]["raw_bytes"].as_u64(),
                logical.map(|l| 2 * l)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the usage table shows {page}, the server {u}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    screenshot(&d, "console.png");

    // Actions, each through its confirmation dialog.
    let holder_id = ids
        .iter()
        .find(|id| {
            clients["clients"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["id"] == **id && c["opens"] == 1)
        })
        .expect("the holder is listed")
        .clone();
    let asked = d.click_and_confirm(&format!("button[data-evict='{holder_id}']"));
    assert!(asked.contains(&holder_id), "{asked}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, c) = http(admin, "GET", "/api/v1/clients", Some(&token), None);
        if !c.to_string().contains(&holder_id) {
            break;
        }
        assert!(Instant::now() < deadline, "evicted client still there: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A snapshot taken from the form shows in the table, and goes through its dialog.
    d.js("document.getElementById('snap-path').value = '/'; \
          document.getElementById('snap-name').value = 'before drain'; \
          document.getElementById('snap-take').click(); return 0");
    let row = "tr[data-snapshot='before drain']";
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = d.js(&format!(
            "const r = document.querySelector(\"{row}\"); return r ? r.textContent : ''"
        ));
        let r = r.as_str().unwrap_or("");
        if r.contains("ready") && r.contains("/.snapshot/before drain") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the snapshot is not shown: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, listed) = http(admin, "GET", "/api/v1/snapshots", Some(&token), None);
    assert_eq!(listed["snapshots"][0]["name"], "before drain", "{listed}");
    // Restored from its row to a new path, through the prompt.
    let asked = d.click_and_answer(&format!("{row} button[data-snap-restore]"), "/restored");
    assert!(asked.contains("Restore snapshot before drain"), "{asked}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = d.js("return document.getElementById('msg').textContent");
        if m.as_str()
            .is_some_and(|s| s.contains("snapshot before drain restored to /restored"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no restore shown: {m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let asked = d.click_and_confirm(&format!("{row} button[data-snap-delete]"));
    assert!(asked.contains("Delete snapshot before drain"), "{asked}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, l) = http(admin, "GET", "/api/v1/snapshots", Some(&token), None);
        if l["snapshots"][0]["state"] != "ready" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delete did not reach the server: {l}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let ds0 = &server_ds[0].0;
    let asked = d.click_and_confirm(&format!("button[data-drain='{ds0}']"));
    assert!(asked.contains("Drain data server"), "{asked}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = d.js("return document.getElementById('msg').textContent");
        if m.as_str()
            .is_some_and(|s| s.contains(&format!("\"draining\":\"{ds0}\"")))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no answer to the drain shown: {m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The table shows it (the page refreshes every 2 s), and offers no second drain.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = d.js(&format!(
            "const r = document.querySelector(\"tr[data-ds='{ds0}']\"); \
             return r ? r.children[1].textContent + (r.querySelector('button') ? ' button' : '') : ''"
        ));
        let s = state.as_str().unwrap_or("");
        if s.starts_with("drain") && !s.contains("button") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page does not show the drain: {state}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(holder);
}

/// What the console shows now, once it has drawn with `nodes` metadata nodes in its table.
fn panels(d: &Driver, nodes: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = d.js(
            "if (!document.body.dataset.loaded) return null;
             const f = {};
             document.querySelectorAll('[data-figure]').forEach(e => { if (!e.closest('tr')) f[e.dataset.figure] = e.textContent; });
             const labels = {};
             document.querySelectorAll('.tile').forEach(t => { labels[t.querySelector('.v').dataset.figure] = t.querySelector('.k').textContent; });
             return { figures: f, labels,
                      alerts: [...document.querySelectorAll('[data-alert]')].map(a => [a.dataset.alert, a.textContent]),
                      nodes: [...document.querySelectorAll('tr[data-node]')].map(r => ({
                          id: Number(r.dataset.node), up: r.querySelector('[data-up]').textContent,
                          led: Number(r.querySelector('[data-led]').textContent),
                          heldBy: r.querySelector('[data-held-by]').textContent })),
                      summary: document.getElementById('md-summary').textContent,
                      domains: [...document.querySelectorAll('tr[data-domain]')].map(r => Number(r.children[1].textContent)),
                      jobs: [...document.querySelectorAll('tr[data-job]')].map(r => r.dataset.job),
                      files: [...document.querySelectorAll('tr[data-file] td:first-child')].map(td => td.textContent),
                      ds: document.querySelectorAll('tr[data-ds]').length };",
        );
        if !v.is_null() && v["nodes"].as_array().is_some_and(|a| a.len() == nodes) {
            return v;
        }
        assert!(Instant::now() < deadline, "the console never loaded: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn screenshot(d: &Driver, name: &str) {
    let png = b64decode(
        d.cmd("GET", "screenshot", None)
            .as_str()
            .expect("base64 PNG"),
    );
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(name);
    std::fs::write(&out, &png).unwrap();
}

/// The operator's view of a 3 MDS + 6 data server cluster: the metadata nodes with the shards
/// each leads and who holds each client address, redundancy, jobs, alerts, the busiest files
/// by path, and free space counted once for six data servers on one disk; then node 3 killed
/// (`kill -9`): an alert, node 3 down, its client address held by node 1, its shards led by
/// the others. Screenshots of both: `target/console-healthy.png`, `target/console-node-down.png`.
#[test]
fn the_console_shows_the_metadata_cluster_redundancy_and_alerts() {
    let t = tempfile::tempdir().unwrap();
    let cl = Cluster::start_nodes(t.path(), 3, 6, &[]);
    let (admin, token) = cl.admin();
    let data = common::random_bytes(6 << 20, 7);
    let src = t.path().join("src.bin");
    std::fs::write(&src, &data).unwrap();
    let server = cl.addr.to_string();
    let o = common::cfs(t.path(), &["mkdir", "--server", &server, "/runs"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = common::cfs(
        t.path(),
        &[
            "put",
            "--server",
            &server,
            &src.to_string_lossy(),
            "/runs/six",
        ],
    );
    assert!(o.ok(), "{}", o.stderr);
    // Every shard led, and the upload's bytes counted (heartbeats carry them).
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (_, s) = http(admin, "GET", "/api/v1/status", Some(&token), None);
        let shards = s["mds"]["metadata"]["shards"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let written: u64 = s["data_servers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| d["write_bytes"].as_u64().unwrap_or(0))
            .sum();
        if !shards.is_empty()
            && shards.iter().all(|s| s["leader"].is_u64())
            && s["mds"]["data"]["mirrored_files"].as_u64() >= Some(1)
            && written >= 2 * data.len() as u64
        {
            break s;
        }
        assert!(Instant::now() < deadline, "cluster not settled: {s}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let shards = status["mds"]["metadata"]["shards"]
        .as_array()
        .unwrap()
        .len() as u64;

    let d = Driver::console(admin, &token);
    // The busiest files by path: reads keep /runs/six in the current window.
    let deadline = Instant::now() + Duration::from_secs(60);
    let healthy = loop {
        let o = common::cfs(t.path(), &["get", "--server", &server, "/runs/six", "-"]);
        assert!(o.ok(), "{}", o.stderr);
        let v = panels(&d, 3);
        if v["files"]
            .as_array()
            .is_some_and(|f| f.iter().any(|p| p == "/runs/six"))
        {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the busiest files never named /runs/six: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("healthy: {healthy}");
    assert_eq!(
        healthy["alerts"],
        json!([["none", healthy["alerts"][0][1]]]),
        "a healthy cluster has no alerts"
    );
    for n in healthy["nodes"].as_array().unwrap() {
        assert_eq!(n["up"], "up", "{n}");
        assert_eq!(
            n["heldBy"],
            n["id"].to_string(),
            "each node holds its own address: {n}"
        );
    }
    let led: u64 = healthy["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["led"].as_u64().unwrap())
        .sum();
    assert_eq!(led, shards, "every shard led by one node");
    assert!(
        healthy["summary"].as_str().is_some_and(
            |s| s.contains(&format!("{shards} shards")) && s.contains("0 without a leader")
        ),
        "{}",
        healthy["summary"]
    );
    let f = &healthy["figures"];
    assert!(f["mirrored"].as_str().is_some_and(|s| s != "0 B"), "{f}");
    assert_eq!(
        f["raw_per_byte"], "2.00",
        "mirrored data: two raw bytes per byte"
    );
    assert_eq!(f["encryption"], "off", "no [encryption]: nothing sealed");
    assert_eq!(f["ds_up"], "6/6");
    // Six data servers on one disk: its free space once, not six times.
    let dss = status["data_servers"].as_array().unwrap();
    let fs: std::collections::BTreeSet<&str> =
        dss.iter().map(|d| d["fs_id"].as_str().unwrap()).collect();
    assert_eq!(
        fs.len(),
        1,
        "the test's data servers share one file system: {fs:?}"
    );
    assert!(
        healthy["labels"]["capacity"]
            .as_str()
            .is_some_and(|l| l.ends_with("on 1 file system")),
        "{}",
        healthy["labels"]
    );
    let cap = dss[0]["capacity_bytes"].as_u64().unwrap();
    let one = d.js(&format!("return human({cap})"));
    assert!(
        healthy["labels"]["capacity"]
            .as_str()
            .is_some_and(|l| l.starts_with(&format!("free of {} ", one.as_str().unwrap()))),
        "capacity counted once ({one}): {}",
        healthy["labels"]
    );
    let in_domains: u64 = healthy["domains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(in_domains, 6, "every data server in one failure domain row");
    assert_eq!(healthy["jobs"], json!([]), "no background job");
    screenshot(&d, "console-healthy.png");

    // Node 3 dies: the page says so, and who took its address over.
    cl.kill9("mds3");
    let deadline = Instant::now() + Duration::from_secs(60);
    let down = loop {
        let v = panels(&d, 3);
        let n3 = v["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["id"] == 3).cloned())
            .unwrap_or_default();
        let alert = v["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x[0] == "node-down"));
        let led3 = n3["led"].as_u64().unwrap_or(1);
        if alert && n3["up"] == "down" && n3["heldBy"] == "1" && led3 == 0 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the console does not show node 3 down (address to node 1, no shard led): {v}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("node 3 down: {down}");
    let text = down["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x[0] == "node-down")
        .map(|x| x[1].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    assert!(
        text.contains("MDS node 3 is down") && text.contains("served by node 1"),
        "{text}"
    );
    screenshot(&d, "console-node-down.png");
}

/// An object store that fails every request is an alert on the console (issue 45 item 8), not
/// a client's error: a single node whose `[tier]` names a loopback port nothing listens on,
/// a file written so the uploader tries; the page raises the "s3" alert naming the bucket and
/// the seconds every request has failed for, while the file reads back through the server.
#[test]
fn the_console_raises_an_alert_while_the_object_store_fails() {
    let t = tempfile::tempdir().unwrap();
    let admin_port = common::free_port();
    let nothing_there = common::free_port();
    let config = format!(
        "data = {:?}\n{}[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n",
        t.path().join("data"),
        crate::tier_cache::tier_toml(&format!("http://127.0.0.1:{nothing_there}")),
    );
    let srv = common::Server::start(t.path(), Some(&config));
    let cfg = srv.config.clone().expect("config");
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let o = common::cfs(
        t.path(),
        &["admin", "token", "--config", &cfg.to_string_lossy()],
    );
    assert!(o.ok(), "{}", o.stderr);
    let token = o.text().trim().to_string();

    let rt = rt();
    let data = crate::tier_cache::data(200_000, 9);
    crate::tier_cache::put(&rt, srv.addr, "/waiting", &data);
    let deadline = Instant::now() + Duration::from_secs(60);
    let failing = loop {
        let (code, s) = http(admin, "GET", "/api/v1/status", Some(&token), None);
        if let Some(secs) = s["mds"]["tier"]["s3_failing_seconds"].as_u64() {
            break secs;
        }
        assert!(
            Instant::now() < deadline,
            "the store never counted as failing: {code} {}",
            s["mds"]["tier"]
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("the store has failed every request for {failing} s");

    let d = Driver::console(admin, &token);
    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        let v = d.js(
            "if (!document.body.dataset.loaded) return null;
             return [...document.querySelectorAll('[data-alert]')].map(a => [a.dataset.alert, a.textContent]);",
        );
        let s3 = v.as_array().and_then(|a| {
            a.iter()
                .find(|x| x[0] == "s3")
                .and_then(|x| x[1].as_str().map(str::to_string))
        });
        if let Some(text) = s3 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the console shows no object store alert: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        alert.contains("has failed every request for") && alert.contains(crate::tier_cache::BUCKET),
        "{alert}"
    );
    // The overview shows the lags: the file waits for the store, and so does the metadata
    // (the root shard's creation), whose lag grows while the store fails.
    let seconds = |v: &Value| {
        v.as_str()
            .and_then(|s| s.strip_suffix(" s"))
            .and_then(|s| s.parse::<u64>().ok())
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lags = d.js(
            "const f = (k) => (document.querySelector(`[data-figure=${k}]`) || {}).textContent;
             return [f('tier_queued'), f('tier_upload_lag'), f('tier_metadata_lag')];",
        );
        if lags[0] == "1" && seconds(&lags[1]).is_some() && seconds(&lags[2]).is_some_and(|s| s > 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the tier's tiles (queued, upload lag, metadata lag) show no metadata lag: {lags}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Not a client's error: the file reads back whole.
    let o = common::cfs(
        t.path(),
        &["get", "--server", &srv.addr.to_string(), "/waiting", "-"],
    );
    assert!(o.ok(), "{}", o.stderr);
    assert_eq!(o.stdout.len(), data.len());
}
