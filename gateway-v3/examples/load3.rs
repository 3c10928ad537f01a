//! Host-side NFSv3 load generator (the v3 twin of `client/examples/load.rs`, same JSON lines,
//! so `conformance hostbench --v3` tabulates both): sequential 1 MiB UNSTABLE WRITEs with
//! `--depth` in flight for `--seconds`, then COMMIT (counted); reading the file back; `--tasks`
//! parallel CREATE loops for `--seconds`; then LOOKUP + GETATTR (stat) and REMOVE (unlink) of
//! every file created.
//!
//! cargo run --release -p gateway-v3 --example load3 -- --server 127.0.0.1:20048
//!     [--mount-port P] [--export /] [--seconds 10] [--depth 8] [--tasks 16] [--server-pid PID]
//!     [--label NAME]
use proto::nfs3::*;
use proto::rpc::{
    AcceptStat, Auth, AuthSys, Connection, ConnectionLimits, RejectCalls, ReplyStatus,
};
use proto::xdr::{Opaque, Reader, Writer, Xdr};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

struct Opts {
    server: SocketAddr,
    mount_port: Option<u16>,
    export: String,
    seconds: u64,
    depth: usize,
    tasks: usize,
    server_pid: Option<u32>,
    label: String,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        server: "127.0.0.1:20048".parse().map_err(|e| format!("{e}"))?,
        mount_port: None,
        export: "/".into(),
        seconds: 10,
        depth: 8,
        tasks: 16,
        server_pid: None,
        label: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--server" => o.server = val()?.parse().map_err(|e| format!("--server: {e}"))?,
            "--mount-port" => o.mount_port = Some(num(val()?)? as u16),
            "--export" => o.export = val()?,
            "--seconds" => o.seconds = num(val()?)?.max(1),
            "--depth" => o.depth = num(val()?)?.max(1) as usize,
            "--tasks" => o.tasks = num(val()?)?.max(1) as usize,
            "--server-pid" => o.server_pid = Some(num(val()?)? as u32),
            "--label" => o.label = val()?,
            // accepted for the same command line as `load`
            "--pnfs" | "--phases" => {
                val()?;
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

#[derive(Clone)]
struct V3 {
    conn: Connection,
    auth: Auth,
}

impl V3 {
    async fn connect(addr: SocketAddr) -> Result<V3, BoxErr> {
        let conn =
            Connection::connect(addr, Arc::new(RejectCalls), ConnectionLimits::default()).await?;
        Ok(V3 {
            conn,
            auth: Auth::Sys(AuthSys {
                stamp: 0,
                machine: b"load3".to_vec(),
                uid: 0,
                gid: 0,
                gids: vec![],
            }),
        })
    }

    async fn call(&self, prog: u32, vers: u32, proc_: u32, args: &[u8]) -> Result<Vec<u8>, BoxErr> {
        let r = self
            .conn
            .call(prog, vers, proc_, &self.auth, args, Duration::from_secs(60))
            .await?;
        if r.status != ReplyStatus::Accepted(AcceptStat::Success) {
            return Err(format!("call {prog}/{proc_} not accepted: {:?}", r.status).into());
        }
        Ok(r.body().to_vec())
    }

    async fn nfs(&self, a: Nfs3Args) -> Result<Nfs3Res, BoxErr> {
        let mut w = Writer::new();
        a.encode(&mut w);
        let body = self
            .call(NFS3_PROGRAM, NFS_V3, a.proc_num(), &w.buf)
            .await?;
        let res =
            Nfs3Res::decode(a.proc_num(), &mut Reader::new(&body))?.ok_or("unknown procedure")?;
        match res.status() {
            0 => Ok(res),
            s => Err(format!("NFSv3 procedure {} failed with status {s}", a.proc_num()).into()),
        }
    }
}

fn dirop(dir: &NfsFh3, n: &str) -> Diropargs3 {
    Diropargs3 {
        dir: dir.clone(),
        name: Opaque::from(n),
    }
}

async fn create(c: &V3, dir: &NfsFh3, n: &str) -> Result<NfsFh3, BoxErr> {
    match c
        .nfs(Nfs3Args::Create(Create3Args {
            r#where: dirop(dir, n),
            how: Createhow3::Unchecked(Sattr3 {
                mode: Some(0o644),
                size: Some(0),
                ..Default::default()
            }),
        }))
        .await?
    {
        Nfs3Res::Create(Create3Res::Ok(ok)) => {
            ok.obj.ok_or_else(|| "CREATE without a handle".into())
        }
        _ => Err("bad CREATE reply".into()),
    }
}

fn report(o: &Opts, bench: &str, t0: Instant, cpu0: Option<f64>, extra: &str) {
    let cpu = match (cpu0, cpu_seconds(o.server_pid)) {
        (Some(a), Some(b)) => format!(",\"server_cpu_s\":{:.3}", b - a),
        _ => String::new(),
    };
    println!(
        "{{\"bench\":\"{bench}\",\"label\":\"{}\",\"server\":\"{}\",\"seconds\":{:.3}{extra}{cpu},\"vers\":3}}",
        o.label,
        o.server,
        t0.elapsed().as_secs_f64()
    );
}

async fn sequential(c: &V3, o: &Opts, dir: &NfsFh3) -> Result<(), BoxErr> {
    let chunk = 1usize << 20;
    let f = create(c, dir, "seq.bin").await?;
    let data = Arc::new(vec![0x5au8; chunk]);
    let (t0, cpu0) = (Instant::now(), cpu_seconds(o.server_pid));
    let stop = t0 + Duration::from_secs(o.seconds);
    let mut inflight = std::collections::VecDeque::new();
    let mut off = 0u64;
    while Instant::now() < stop {
        let (c2, f2, d2, at) = (c.clone(), f.clone(), data.clone(), off);
        inflight.push_back(tokio::spawn(async move {
            c2.nfs(Nfs3Args::Write(Write3Args {
                file: f2,
                offset: at,
                count: d2.len() as u32,
                stable: StableHow::Unstable,
                data: Opaque(d2.to_vec()),
            }))
            .await
        }));
        off += chunk as u64;
        if inflight.len() >= o.depth {
            if let Some(h) = inflight.pop_front() {
                h.await??;
            }
        }
    }
    while let Some(h) = inflight.pop_front() {
        h.await??;
    }
    c.nfs(Nfs3Args::Commit(Commit3Args {
        file: f.clone(),
        offset: 0,
        count: 0,
    }))
    .await?;
    let mib = off as f64 / (1 << 20) as f64;
    let secs = t0.elapsed().as_secs_f64();
    report(
        o,
        "seq_write",
        t0,
        cpu0,
        &format!(
            ",\"bytes\":{off},\"mib_per_s\":{:.1},\"depth\":{},\"io_size\":{chunk}",
            mib / secs,
            o.depth
        ),
    );

    let (t0, cpu0) = (Instant::now(), cpu_seconds(o.server_pid));
    let mut inflight = std::collections::VecDeque::new();
    let mut at = 0u64;
    let mut got = 0u64;
    while at < off {
        let (c2, f2, a) = (c.clone(), f.clone(), at);
        inflight.push_back(tokio::spawn(async move {
            c2.nfs(Nfs3Args::Read(Read3Args {
                file: f2,
                offset: a,
                count: chunk as u32,
            }))
            .await
        }));
        at += chunk as u64;
        if inflight.len() >= o.depth {
            if let Some(h) = inflight.pop_front() {
                if let Nfs3Res::Read(Read3Res::Ok(r)) = h.await?? {
                    got += r.data.0.len() as u64;
                }
            }
        }
    }
    while let Some(h) = inflight.pop_front() {
        if let Nfs3Res::Read(Read3Res::Ok(r)) = h.await?? {
            got += r.data.0.len() as u64;
        }
    }
    if got != off {
        return Err(format!("read {got} of {off} bytes back").into());
    }
    let secs = t0.elapsed().as_secs_f64();
    report(
        o,
        "seq_read",
        t0,
        cpu0,
        &format!(
            ",\"bytes\":{got},\"mib_per_s\":{:.1},\"depth\":{}",
            got as f64 / (1 << 20) as f64 / secs,
            o.depth
        ),
    );
    c.nfs(Nfs3Args::Remove(Remove3Args {
        object: dirop(dir, "seq.bin"),
    }))
    .await?;
    Ok(())
}

async fn metadata(c: &V3, o: &Opts, dir: &NfsFh3) -> Result<(), BoxErr> {
    let d = match c
        .nfs(Nfs3Args::Mkdir(Mkdir3Args {
            r#where: dirop(dir, "meta"),
            attributes: Sattr3 {
                mode: Some(0o755),
                ..Default::default()
            },
        }))
        .await?
    {
        Nfs3Res::Mkdir(Create3Res::Ok(ok)) => ok.obj.ok_or("MKDIR without a handle")?,
        _ => return Err("bad MKDIR reply".into()),
    };
    let (t0, cpu0) = (Instant::now(), cpu_seconds(o.server_pid));
    let stop = t0 + Duration::from_secs(o.seconds);
    let mut tasks = Vec::new();
    for t in 0..o.tasks {
        let (c2, d2) = (c.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let mut names = Vec::new();
            while Instant::now() < stop {
                let n = format!("f{t}-{}", names.len());
                create(&c2, &d2, &n).await?;
                names.push(n);
            }
            Ok::<_, BoxErr>(names)
        }));
    }
    let mut names = Vec::new();
    for t in tasks {
        names.extend(t.await??);
    }
    let n = names.len();
    let secs = t0.elapsed().as_secs_f64();
    report(
        o,
        "create",
        t0,
        cpu0,
        &format!(
            ",\"ops\":{n},\"ops_per_s\":{:.0},\"tasks\":{}",
            n as f64 / secs,
            o.tasks
        ),
    );
    let names = Arc::new(names);
    for (bench, unlink) in [("stat", false), ("unlink", true)] {
        let (t0, cpu0) = (Instant::now(), cpu_seconds(o.server_pid));
        let mut tasks = Vec::new();
        for t in 0..o.tasks {
            let (c2, d2, all) = (c.clone(), d.clone(), names.clone());
            let ntasks = o.tasks;
            tasks.push(tokio::spawn(async move {
                for nm in all.iter().skip(t).step_by(ntasks) {
                    if unlink {
                        c2.nfs(Nfs3Args::Remove(Remove3Args {
                            object: dirop(&d2, nm),
                        }))
                        .await?;
                    } else if let Nfs3Res::Lookup(Lookup3Res::Ok(ok)) = c2
                        .nfs(Nfs3Args::Lookup(Lookup3Args {
                            what: dirop(&d2, nm),
                        }))
                        .await?
                    {
                        c2.nfs(Nfs3Args::Getattr(Getattr3Args { object: ok.object }))
                            .await?;
                    }
                }
                Ok::<_, BoxErr>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let secs = t0.elapsed().as_secs_f64();
        report(
            o,
            bench,
            t0,
            cpu0,
            &format!(
                ",\"ops\":{n},\"ops_per_s\":{:.0},\"tasks\":{}",
                n as f64 / secs,
                o.tasks
            ),
        );
    }
    c.nfs(Nfs3Args::Rmdir(Remove3Args {
        object: dirop(dir, "meta"),
    }))
    .await?;
    Ok(())
}

async fn run(o: Opts) -> Result<(), BoxErr> {
    let mnt_addr = SocketAddr::new(o.server.ip(), o.mount_port.unwrap_or(o.server.port()));
    let m = V3::connect(mnt_addr).await?;
    let body = m
        .call(
            MOUNT_PROGRAM,
            MOUNT_V3,
            MOUNTPROC3_MNT,
            &Dirpath(Opaque::from(o.export.as_str())).to_xdr(),
        )
        .await?;
    let root = match Mountres3::from_xdr(&body)? {
        Mountres3::Ok(ok) => NfsFh3 { data: ok.fhandle.0 },
        Mountres3::Err(e) => return Err(format!("MNT {}: {e}", o.export).into()),
    };
    m.conn.close();
    let c = V3::connect(o.server).await?;
    sequential(&c, &o, &root).await?;
    metadata(&c, &o, &root).await?;
    c.conn.close();
    Ok(())
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("load3: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load3: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(o)) {
        eprintln!("load3: {e}");
        std::process::exit(1);
    }
}
