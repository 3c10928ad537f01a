//! `cfs admin snapshot create | list | delete` against a real one-node `cfs server`: what an
//! operator types, what it prints, and every refusal with the sentence that says why. What a
//! snapshot holds is tested in `meta`'s namespace tests (the cut) and, through NFS, where
//! `.snapshot` is served.
use crate::common;
use crate::http_client;

use common::{cfs, Server};
use std::path::Path;
use std::time::{Duration, Instant};

/// A one-node server with an admin listener and `extra` config, and that listener's address.
fn start(dir: &Path, extra: &str) -> (Server, std::net::SocketAddr) {
    let data = dir.join("data");
    let server = Server::start(
        dir,
        Some(&format!(
            "data = {:?}\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra}",
            data.to_string_lossy()
        )),
    );
    (server, admin_addr(dir))
}

fn admin_addr(dir: &Path) -> std::net::SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(dir.join("data").join("admin.addr")) {
            return t.trim().parse().expect("admin.addr");
        }
        assert!(Instant::now() < deadline, "no admin.addr written");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn snapshots_are_taken_listed_and_deleted_and_bad_requests_say_why() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (server, admin) = start(dir, "");
    let config = dir.join("cfs.toml").to_string_lossy().into_owned();
    let s = server.server_arg();
    let o = cfs(dir, &["mkdir", "--server", &s, "/proj", "/other"]);
    assert!(o.ok(), "{}", o.stderr);
    std::fs::write(dir.join("f"), b"bytes").unwrap();
    let f = dir.join("f").to_string_lossy().into_owned();
    let o = cfs(dir, &["put", "--server", &s, &f, "/proj/file"]);
    assert!(o.ok(), "{}", o.stderr);
    let admin_cmd = |args: &[&str]| {
        let mut all = vec!["admin", "snapshot"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &config]);
        cfs(dir, &all)
    };

    // Nothing is served without the token.
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(http_client::request(
            admin,
            "GET",
            "/api/v1/snapshots",
            None,
            None,
            Duration::from_secs(10),
        ))
        .expect("admin listener answers");
    assert_eq!(r.status, 401);

    let o = admin_cmd(&["list"]);
    assert!(o.ok(), "{}", o.stderr);
    assert!(o.text().contains("no snapshots"), "{}", o.text());

    let o = admin_cmd(&["create", "/proj", "--name", "weekly"]);
    assert!(o.ok(), "{}", o.stderr);
    assert!(
        o.text().contains("read it under /proj/.snapshot/weekly"),
        "{}",
        o.text()
    );
    let o = admin_cmd(&["create", "/", "--name", "at root 2", "--json"]);
    assert!(o.ok(), "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(o.text().trim()).expect("json");
    assert_eq!(v["shown_at"], "/.snapshot/at root 2");

    let o = admin_cmd(&["list"]);
    assert!(o.ok(), "{}", o.stderr);
    let lines: Vec<String> = o.text().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{}", o.text());
    assert!(
        lines[1].contains("weekly") && lines[1].contains("ready"),
        "{}",
        o.text()
    );
    assert!(lines[1].ends_with("/proj/.snapshot/weekly"), "{}", o.text());
    assert!(lines[2].ends_with("/.snapshot/at root 2"), "{}", o.text());
    let o = admin_cmd(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(o.text().trim()).expect("json");
    let rows = v["snapshots"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["path"], "/proj");
    assert_eq!(rows[0]["retain_secs"], 7 * 24 * 3600);
    assert!(rows[0]["id"].as_u64() < rows[1]["id"].as_u64());

    // Refusals, each with its reason.
    for (args, why) in [
        (
            vec!["create", "/proj", "--name", "weekly"],
            "exists already",
        ),
        (vec!["create", "/nope", "--name", "n"], "no such directory"),
        (
            vec!["create", "/proj/file", "--name", "n"],
            "not a directory",
        ),
        (vec!["create", "proj", "--name", "n"], "no such directory"),
        (
            vec!["create", "/proj", "--name", "a/b"],
            "not a snapshot name",
        ),
        (
            vec!["create", "/proj", "--name", ".."],
            "not a snapshot name",
        ),
        (vec!["delete", "monthly"], "no snapshot is named"),
        (vec!["restore", "monthly"], "no snapshot is named"),
        (
            vec!["restore", "weekly", "--to", "relative"],
            "not a place to restore to",
        ),
        (
            vec!["restore", "weekly", "--to", "/proj"],
            "exists: restore to a path that does not exist",
        ),
        (
            vec!["restore", "weekly", "--to", "/nope/x"],
            "no such directory",
        ),
    ] {
        let o = admin_cmd(&args);
        assert!(!o.ok(), "{args:?} accepted: {}", o.text());
        assert!(o.stderr.contains(why), "{args:?}: {}", o.stderr);
    }
    let o = cfs(dir, &["mkdir", "--server", &s, "/other/.snapshot"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = admin_cmd(&["create", "/other", "--name", "n"]);
    assert!(!o.ok());
    assert!(
        o.stderr.contains("holds an entry named .snapshot"),
        "{}",
        o.stderr
    );

    // Restored beside the original, as an operator would to look before putting it back.
    let o = cfs(dir, &["put", "--server", &s, &f, "/proj/later"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = admin_cmd(&["restore", "weekly", "--to", "/proj-back"]);
    assert!(o.ok(), "{}", o.stderr);
    assert!(
        o.text().contains("restored to /proj-back") && o.text().contains("1 files"),
        "{}",
        o.text()
    );
    let o = cfs(dir, &["cat", "--server", &s, "/proj-back/file"]);
    assert!(o.ok() && o.text() == "bytes", "{} {}", o.text(), o.stderr);
    let o = cfs(dir, &["cat", "--server", &s, "/proj-back/later"]);
    assert!(!o.ok(), "a file made after the cut is not restored");

    // Both snapshots saw /proj/file; overwritten, its old bytes are one image that serves
    // both, so each counts it as shared and neither as its own (deleting one frees nothing).
    std::fs::write(dir.join("g"), b"other bytes").unwrap();
    let g = dir.join("g").to_string_lossy().into_owned();
    let o = cfs(dir, &["put", "--server", &s, &g, "/proj/file"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = admin_cmd(&["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(o.text().trim()).expect("json");
    assert_eq!(v["bytes_exact"], true, "{v}");
    for r in v["snapshots"].as_array().expect("rows") {
        assert_eq!(r["unique_bytes"], 0, "{r}");
        assert!(r["shared_bytes"].as_u64() > Some(0), "{r}");
    }
    let o = admin_cmd(&["list"]);
    assert!(
        o.text()
            .lines()
            .next()
            .is_some_and(|h| h.contains("UNIQUE") && h.contains("SHARED")),
        "{}",
        o.text()
    );

    // A name with a space goes through the URL intact.
    let o = admin_cmd(&["delete", "at root 2"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = admin_cmd(&["delete", "weekly"]);
    assert!(o.ok(), "{}", o.stderr);
    assert!(o.text().contains("snapshot weekly deleted"), "{}", o.text());
    // Deleted at once from the list (the merge runs in the background), and the name is
    // free again once its record goes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = admin_cmd(&["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(o.text().trim()).expect("json");
        let left = v["snapshots"].as_array().map_or(0, Vec::len);
        if left == 0 {
            break;
        }
        assert!(
            v["snapshots"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["state"] == "deleting"),
            "{v}"
        );
        assert!(Instant::now() < deadline, "deleted snapshots stay: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = admin_cmd(&["create", "/proj", "--name", "weekly"]);
    assert!(
        o.ok(),
        "the name of a deleted snapshot is free again: {}",
        o.stderr
    );
    drop(server);
}

#[test]
fn a_schedule_keeps_its_newest_and_retention_deletes() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let (server, admin) = start(
        dir,
        "[snapshots]\nretain_days = 3\n\
         [[snapshots.schedule]]\npath = \"/proj\"\nevery = \"2s\"\nkeep = 2\nname = \"t\"\n",
    );
    let config = dir.join("cfs.toml").to_string_lossy().into_owned();
    let s = server.server_arg();
    let o = cfs(dir, &["mkdir", "--server", &s, "/proj"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = cfs(dir, &["admin", "token", "--config", &config]);
    let token = o.text().trim().to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let call = |method: &str, path: &str, body: Option<&str>| {
        let r = rt
            .block_on(http_client::request(
                admin,
                method,
                path,
                Some(&token),
                body,
                Duration::from_secs(10),
            ))
            .expect("admin listener answers");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
        (r.status, v)
    };
    // By hand: the configured retention, or the one asked for.
    let (st, v) = call(
        "POST",
        "/api/v1/snapshots",
        Some(r#"{"path":"/proj","name":"kept"}"#),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["retain_secs"], 3 * 86_400);
    let (st, v) = call(
        "POST",
        "/api/v1/snapshots",
        Some(r#"{"path":"/proj","name":"brief","retain_secs":1}"#),
    );
    assert_eq!(st, 200, "{v}");

    // Over ~9 s (4 periods of 2 s): the schedule's snapshots are consecutive periods, at most
    // two ready at a time once it is running; `brief` goes, `kept` stays.
    let start = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    let mut last = serde_json::Value::Null;
    while start.elapsed() < Duration::from_secs(9) {
        let (_, v) = call("GET", "/api/v1/snapshots", None);
        let rows = v["snapshots"].as_array().cloned().unwrap_or_default();
        let ready: Vec<String> = rows
            .iter()
            .filter(|r| r["state"] == "ready")
            .filter_map(|r| r["name"].as_str())
            .filter(|n| n.starts_with("t-"))
            .map(str::to_string)
            .collect();
        assert!(
            ready.len() <= 3,
            "more than keep + the one being taken: {v}"
        );
        seen.extend(ready);
        last = v;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        seen.len() >= 4,
        "a 2 s schedule took {} in 9 s: {seen:?}",
        seen.len()
    );
    let ready = |v: &serde_json::Value, prefix: &str| -> Vec<String> {
        (v["snapshots"].as_array().unwrap().iter())
            .filter(|r| r["state"] == "ready")
            .filter_map(|r| r["name"].as_str())
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect()
    };
    // Between a pass's create and its delete a third is ready for a moment: look again.
    let deadline = Instant::now() + Duration::from_secs(3);
    while ready(&last, "t-").len() > 2 {
        assert!(Instant::now() < deadline, "keep = 2, yet ready: {last}");
        std::thread::sleep(Duration::from_millis(50));
        last = call("GET", "/api/v1/snapshots", None).1;
    }
    assert!(!ready(&last, "t-").is_empty(), "{last}");
    // Names are the periods' starts (UTC, with seconds for a period under a minute), two
    // seconds apart: `t-YYYY-MM-DD_HHMMSS`.
    for n in &seen {
        let secs: u32 = n[n.len() - 2..].parse().expect("seconds in the name");
        assert_eq!(secs % 2, 0, "{n} is not a period's start");
        assert_eq!(n.len(), "t-2026-12-01_050646".len(), "{n}");
    }
    assert_eq!(ready(&last, "kept"), vec!["kept"], "{last}");
    assert!(
        ready(&last, "brief").is_empty(),
        "past its retention: {last}"
    );
    drop(server);
}
