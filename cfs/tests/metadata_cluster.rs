//! Three `cfs server` processes as one metadata cluster (`[cluster] node_id`,
//! `metadata_nodes`): every shard a Raft group over the three. Names made through any node are
//! seen through every node; `kill -9` of one node leaves the other two serving after a pause;
//! the killed node, restarted on its disk, catches up.
mod common;
use client::{Client, ClientConfig};
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

struct Node {
    id: u64,
    addr: SocketAddr,
    dir: std::path::PathBuf,
    proc_: Option<KillOnDrop>,
    starts: u32,
}

impl Node {
    fn start(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("server-{}.log", self.starts)))
            .expect("log");
        let child = Command::new(BIN)
            .arg("server")
            .arg("--config")
            .arg(self.dir.join("cfs.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cfs server");
        self.proc_ = Some(KillOnDrop(child));
    }

    fn kill9(&mut self) {
        // KillOnDrop sends SIGKILL to the PID it started and reaps it.
        self.proc_ = None;
    }
}

fn config(dir: &Path, secret: &Path, id: u64, addr: SocketAddr, all: &[String]) -> String {
    format!(
        "data = {data:?}\nlisten = \"{addr}\"\nroles = [\"mds\"]\n\
         [cluster]\nsecret_file = {secret:?}\nnode_id = {id}\nmetadata_nodes = {all:?}\n\
         [[export]]\npath = \"/\"\n",
        data = dir.join("data"),
    )
}

async fn connect(addr: SocketAddr, limit: Duration) -> Client {
    let start = Instant::now();
    loop {
        match Client::connect(ClientConfig::new(addr)).await {
            Ok(c) => return c,
            Err(e) => {
                assert!(start.elapsed() < limit, "cannot mount {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn names(c: &Client, dir: &str) -> Vec<String> {
    let Ok(fh) = c.lookup_path(dir).await else {
        return Vec::new();
    };
    let mut n: Vec<String> = c
        .readdir(&fh)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    n.sort();
    n
}

async fn until_names(c: &Client, dir: &str, want: &[String], what: &str) {
    let start = Instant::now();
    loop {
        let have = names(c, dir).await;
        if have == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: {} of {} names",
            have.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn three_mds_nodes_share_the_namespace_and_survive_a_kill9() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "metadata cluster test secret 42\n").unwrap();
    let base = free_ports(3);
    let mut nodes: Vec<Node> = (0..3u16)
        .map(|i| Node {
            id: u64::from(i) + 1,
            addr: format!("127.0.0.1:{}", base + i).parse().unwrap(),
            dir: tmp.path().join(format!("n{}", i + 1)),
            proc_: None,
            starts: 0,
        })
        .collect();
    let all: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.addr))
        .collect();
    for n in &mut nodes {
        std::fs::create_dir_all(&n.dir).unwrap();
        std::fs::write(
            n.dir.join("cfs.toml"),
            config(&n.dir, &secret, n.id, n.addr, &all),
        )
        .unwrap();
        n.start();
    }
    for n in &nodes {
        let start = Instant::now();
        while TcpStream::connect_timeout(&n.addr, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "node {} did not start; see {}",
                n.id,
                n.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let rt = rt();
    rt.block_on(async {
        let limit = Duration::from_secs(30);
        let c: Vec<Client> = vec![
            connect(nodes[0].addr, limit).await,
            connect(nodes[1].addr, limit).await,
            connect(nodes[2].addr, limit).await,
        ];
        // Made through every node in turn.
        let root = c[1].root().clone();
        c[1].mkdir(&root, "d", 0o755).await.expect("mkdir d");
        let mut want = Vec::new();
        for i in 0..30 {
            let name = format!("m{i:02}");
            let at = &c[i % 3];
            let d = at.lookup_path("/d").await.expect("lookup /d");
            at.mkdir(&d, &name, 0o755).await.expect("mkdir");
            want.push(name);
        }
        for (i, cl) in c.iter().enumerate() {
            until_names(cl, "/d", &want, &format!("node {}", i + 1)).await;
        }
        for cl in c {
            let _ = cl.shutdown().await;
        }
    });

    // Node 1 leads a third of the shards (among them shard 0, the root's).
    nodes[0].kill9();
    rt.block_on(async {
        let c2 = connect(nodes[1].addr, Duration::from_secs(30)).await;
        let d = c2.lookup_path("/d").await.expect("lookup /d");
        let t = Instant::now();
        let root = c2.root().clone();
        c2.mkdir(&root, "after", 0o755)
            .await
            .expect("mkdir in the root after node 1 died");
        eprintln!("first change after the kill -9 took {:?}", t.elapsed());
        let mut want = names(&c2, "/d").await;
        for i in 0..10 {
            let name = format!("k{i}");
            c2.mkdir(&d, &name, 0o755).await.expect("mkdir after kill");
            want.push(name);
        }
        want.sort();
        let c3 = connect(nodes[2].addr, Duration::from_secs(30)).await;
        until_names(&c3, "/d", &want, "node 3 after the kill").await;
        let _ = c2.shutdown().await;
        let _ = c3.shutdown().await;

        // Node 1 comes back on its disk and catches up.
        nodes[0].start();
        let c1 = connect(nodes[0].addr, Duration::from_secs(60)).await;
        until_names(&c1, "/d", &want, "node 1 after its restart").await;
        c1.lookup_path("/after").await.expect("/after on node 1");
        let _ = c1.shutdown().await;
    });
}
