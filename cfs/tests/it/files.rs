//! The file commands against a real `cfs server`: round trips, listings, errors.
use crate::common;
use common::*;

#[test]
fn put_get_round_trip_20_mib() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(t.path(), None);
    let s = srv.server_arg();
    let data = random_bytes(20 << 20, 0x5eed);
    let local = t.path().join("in.bin");
    std::fs::write(&local, &data).unwrap();
    let l = local.to_str().unwrap();

    let o = cfs(t.path(), &["put", "--server", &s, l, "/big.bin"]);
    assert!(o.ok(), "put: {}", o.stderr);
    let o = cfs(t.path(), &["stat", "--server", &s, "/big.bin"]);
    assert!(o.ok(), "stat: {}", o.stderr);
    assert!(
        o.text().contains(&format!("Size: {}", data.len())),
        "{}",
        o.text()
    );

    let back = t.path().join("out.bin");
    let o = cfs(
        t.path(),
        &["get", "--server", &s, "/big.bin", back.to_str().unwrap()],
    );
    assert!(o.ok(), "get: {}", o.stderr);
    assert_eq!(digest(&std::fs::read(&back).unwrap()), digest(&data));

    // FILE_SYNC writes, an odd size, and get to stdout.
    let odd = &data[..(3 << 20) + 12345];
    std::fs::write(&local, odd).unwrap();
    let o = cfs(t.path(), &["put", "--sync", "--server", &s, l, "/odd.bin"]);
    assert!(o.ok(), "put --sync: {}", o.stderr);
    let o = cfs(t.path(), &["get", "--server", &s, "/odd.bin", "-"]);
    assert!(o.ok(), "get -: {}", o.stderr);
    assert_eq!(digest(&o.stdout), digest(odd));

    // Overwriting a longer file with a shorter one truncates it.
    std::fs::write(&local, b"short").unwrap();
    let o = cfs(t.path(), &["put", "--server", &s, l, "/big.bin"]);
    assert!(o.ok(), "put over: {}", o.stderr);
    let o = cfs(t.path(), &["cat", "--server", &s, "/big.bin"]);
    assert_eq!(o.stdout, b"short");

    // An empty file.
    std::fs::write(&local, b"").unwrap();
    assert!(cfs(t.path(), &["put", "--server", &s, l, "/empty"]).ok());
    let o = cfs(t.path(), &["cat", "--server", &s, "/empty"]);
    assert!(o.ok() && o.stdout.is_empty(), "{}", o.stderr);
}

#[test]
fn ls_stat_mkdir_rm() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(t.path(), None);
    let s = srv.server_arg();
    let local = t.path().join("f.txt");
    std::fs::write(&local, b"hello\n").unwrap();
    let l = local.to_str().unwrap();

    assert!(cfs(t.path(), &["mkdir", "--server", &s, "-p", "/a/b/c"]).ok());
    // -p on an existing directory is not an error.
    assert!(cfs(t.path(), &["mkdir", "--server", &s, "-p", "/a/b"]).ok());
    assert!(cfs(t.path(), &["mkdir", "--server", &s, "/a/d"]).ok());
    assert!(cfs(t.path(), &["put", "--server", &s, l, "/a/b/"]).ok());
    assert!(cfs(t.path(), &["put", "--server", &s, l, "/a/x.txt"]).ok());

    let o = cfs(t.path(), &["ls", "--server", &s, "/a"]);
    assert!(o.ok(), "{}", o.stderr);
    assert_eq!(o.text(), "b\nd\nx.txt\n");
    let o = cfs(t.path(), &["ls", "--server", &s, "/a/b"]);
    assert_eq!(o.text(), "c\nf.txt\n");
    let o = cfs(t.path(), &["ls", "-l", "--server", &s, "/a"]);
    let text = o.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" b"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("-rw-") && lines[2].contains(" 6 "),
        "{lines:?}"
    );

    let o = cfs(t.path(), &["stat", "--server", &s, "/a/b", "/a/x.txt"]);
    assert!(o.ok());
    let txt = o.text();
    assert!(
        txt.contains("Type: directory") && txt.contains("Type: regular file"),
        "{txt}"
    );
    assert!(txt.contains("Size: 6"), "{txt}");

    // Many entries: the listing follows READDIR cookies across several replies.
    let many: Vec<String> = (0..600)
        .map(|i| format!("/a/d/entry-with-a-longish-name-{i:04}"))
        .collect();
    for chunk in many.chunks(150) {
        let mut args = vec!["mkdir", "--server", &s];
        args.extend(chunk.iter().map(|p| p.as_str()));
        let o = cfs(t.path(), &args);
        assert!(o.ok(), "{}", o.stderr);
    }
    let o = cfs(t.path(), &["ls", "--server", &s, "/a/d"]);
    assert_eq!(o.text().lines().count(), 600);

    let o = cfs(t.path(), &["rm", "--server", &s, "/a/x.txt"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = cfs(t.path(), &["rm", "-r", "--server", &s, "/a"]);
    assert!(o.ok(), "{}", o.stderr);
    let o = cfs(t.path(), &["ls", "--server", &s, "/"]);
    assert!(o.ok());
    assert!(!o.text().lines().any(|l| l == "a"), "{}", o.text());
}

#[test]
fn errors_are_one_line_and_fail() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(t.path(), None);
    let s = srv.server_arg();
    let local = t.path().join("f.txt");
    std::fs::write(&local, b"x").unwrap();
    let l = local.to_str().unwrap();
    for args in [
        &["mkdir", "--server", &s, "/d"][..],
        &["put", "--server", &s, l, "/d/f"],
    ] {
        let o = cfs(t.path(), args);
        assert!(o.ok(), "{args:?}: {}", o.stderr);
    }

    let expect = |args: &[&str], msg: &str| {
        let o = cfs(t.path(), args);
        assert!(!o.ok(), "{args:?} succeeded");
        assert_eq!(o.stderr.trim_end(), msg, "{args:?}");
        assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {}", o.stderr);
    };
    expect(
        &["ls", "--server", &s, "/x"],
        "cfs: /x: No such file or directory (NFS4ERR_NOENT)",
    );
    expect(
        &["stat", "--server", &s, "/d/nope"],
        "cfs: /d/nope: No such file or directory (NFS4ERR_NOENT)",
    );
    expect(
        &[
            "get",
            "--server",
            &s,
            "/nope",
            t.path().join("o").to_str().unwrap(),
        ],
        "cfs: /nope: No such file or directory (NFS4ERR_NOENT)",
    );
    expect(
        &["mkdir", "--server", &s, "/d"],
        "cfs: /d: File exists (NFS4ERR_EXIST)",
    );
    expect(
        &["mkdir", "--server", &s, "/no/such"],
        "cfs: /no/such: No such file or directory (NFS4ERR_NOENT)",
    );
    expect(
        &["mkdir", "-p", "--server", &s, "/d/f/sub"],
        "cfs: /d/f/sub: Not a directory (NFS4ERR_NOTDIR)",
    );
    expect(
        &["rm", "--server", &s, "/d"],
        "cfs: /d: Is a directory (NFS4ERR_ISDIR)",
    );
    expect(
        &["put", "--server", &s, "/definitely/not/here", "/z"],
        "cfs: /definitely/not/here: No such file or directory (os error 2)",
    );
    let long = format!("/{}", "n".repeat(300));
    expect(
        &["mkdir", "--server", &s, &long],
        &format!("cfs: {long}: File name too long (NFS4ERR_NAMETOOLONG)"),
    );
    // Nothing listening.
    let dead = format!("127.0.0.1:{}", free_port());
    let o = cfs(t.path(), &["ls", "--server", &dead, "/"]);
    assert!(!o.ok());
    assert!(
        o.stderr
            .starts_with(&format!("cfs: cannot connect to {dead}: ")),
        "{}",
        o.stderr
    );
    // The directory and file are still there.
    let o = cfs(t.path(), &["ls", "--server", &s, "/d"]);
    assert_eq!(o.text(), "f\n");
}

/// Regular files (not directories) anywhere under `dir`.
fn count_files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.map(|e| e.unwrap())
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn removed_files_lose_their_data() {
    let t = tempfile::tempdir().unwrap();
    let srv = Server::start(t.path(), None);
    let s = srv.server_arg();
    let objects = t.path().join("data/chunks/objects");
    let local = t.path().join("in.bin");
    std::fs::write(&local, random_bytes(1 << 20, 7)).unwrap();
    let l = local.to_str().unwrap();
    for i in 0..20 {
        let o = cfs(t.path(), &["put", "--server", &s, l, &format!("/f{i}")]);
        assert!(o.ok(), "put: {}", o.stderr);
    }
    let before = count_files(&objects);
    assert!(
        before >= 20,
        "expected chunk files for 20 files, found {before}"
    );
    for i in 0..20 {
        let o = cfs(t.path(), &["rm", "--server", &s, &format!("/f{i}")]);
        assert!(o.ok(), "rm: {}", o.stderr);
    }
    // Data goes in the background, right after the replies.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count_files(&objects) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{} chunk files left 10 s after removing every file",
            count_files(&objects)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
