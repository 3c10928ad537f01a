//! Runs a plan: servers × kernels × versions × scenarios, one guest boot per case (two for the
//! two-client scenario), classifying each outcome honestly.

use crate::failure_logs;
use crate::guest::{self, GuestJob, GuestRun, RC_MOUNT_FAILED, RC_NO_EXIT, RC_TIMEOUT};
use crate::hostops::{self, HostReport};
use crate::known;
use crate::paths;
use crate::rendezvous::Rendezvous;
use crate::report::{CaseResult, Status};
use crate::scenario::Scenario;
use crate::server::{self, Running, ServerSpec};
use crate::setup::{KernelKind, Kernels};
use crate::wire;
use std::collections::BTreeMap;
use std::time::Duration;

pub struct ServerPlan {
    pub spec: ServerSpec,
    pub versions: Vec<String>,
    /// only these scenarios for this server (None: the plan's)
    pub only: Option<Vec<&'static str>>,
    /// these scenarios only at these versions (CI runs posix-diff at one version per kernel)
    pub scenario_vers: Vec<(&'static str, &'static [&'static str])>,
    /// these scenarios only on this kernel (CI runs its longest cluster scenarios on one
    /// kernel each; `run` runs them on both)
    pub scenario_kernels: Vec<(&'static str, KernelKind)>,
    /// these scenarios on this kernel only at this version (CI meets each kernel and version
    /// once per check across the server kinds, not on every kind)
    pub scenario_kernel_vers: Vec<(&'static str, KernelKind, &'static str)>,
}

impl ServerPlan {
    /// Whether scenario `s` runs on kernel `k` at version `v` (`scenario_vers` and
    /// `scenario_kernels` restrict some scenarios).
    fn runs_at(&self, s: &Scenario, k: KernelKind, v: &str) -> bool {
        self.scenario_vers
            .iter()
            .all(|(n, vs)| *n != s.name || vs.contains(&v))
            && self
                .scenario_kernels
                .iter()
                .all(|(n, only)| *n != s.name || *only == k)
            && self
                .scenario_kernel_vers
                .iter()
                .all(|(n, on, at)| *n != s.name || *on != k || *at == v)
    }

    fn scenarios<'a>(&self, plan: &'a Plan) -> Vec<&'a Scenario> {
        plan.scenarios
            .iter()
            .copied()
            .filter(|s| match &self.only {
                Some(o) => o.contains(&s.name),
                None => true,
            })
            .collect()
    }
}

pub struct Plan {
    pub servers: Vec<ServerPlan>,
    pub kernels: Vec<KernelKind>,
    pub scenarios: Vec<&'static Scenario>,
    pub quick: bool,
    /// versions named on the command line: "not offered" for them is a failure
    pub explicit_vers: bool,
    /// posix-diff: how many seeds (`run --seeds N`) and the first one (`--first-seed S`)
    pub seeds: Option<u32>,
    pub first_seed: Option<u64>,
}

/// posix-diff guest time per further seed: two runs of 200 calls and, on a mismatch, the
/// bounded minimisation (MIN_SECONDS=120) with its final replay.
const SECONDS_PER_SEED: u64 = 180;

pub fn execute(plan: &Plan) -> Vec<CaseResult> {
    let kernels = Kernels::load();
    let mut results = Vec::new();
    let mut run_id = 0u32;
    for sp in &plan.servers {
        let label = sp.spec.label();
        let scenarios = sp.scenarios(plan);
        let mut srv = match server::start(&sp.spec, crate::netns::inside()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("[{label}] cannot start: {e}");
                for &k in &plan.kernels {
                    for v in &sp.versions {
                        for s in &scenarios {
                            results.push(blank(
                                &label,
                                "",
                                s,
                                k,
                                "",
                                v,
                                Status::Error,
                                e.to_string(),
                            ));
                        }
                    }
                }
                continue;
            }
        };
        eprintln!(
            "[{label}] {} listening on 127.0.0.1:{}",
            srv.version, srv.port
        );
        for &k in &plan.kernels {
            let Some(kver) = kernels.get(k).map(str::to_owned) else {
                for v in &sp.versions {
                    for s in &scenarios {
                        results.push(blank(
                            &label,
                            &srv.version,
                            s,
                            k,
                            "",
                            v,
                            Status::Error,
                            "kernel not set up: run `cargo run -p conformance -- setup`".into(),
                        ));
                    }
                }
                continue;
            };
            for v in &sp.versions {
                // one refused mount answers the question for the rest of this kernel/version
                let mut refused: Option<CaseResult> = None;
                for s in &scenarios {
                    if !sp.runs_at(s, k, v) {
                        continue;
                    }
                    if let Some(r) = &refused {
                        let mut r = r.clone();
                        r.scenario = s.name.into();
                        r.duration_s = 0.0;
                        r.output.clear();
                        r.mountstats.clear();
                        r.mountstats_rtt_ms.clear();
                        println!("{}", progress_line(&r));
                        results.push(r);
                        continue;
                    }
                    if s.host.is_some_and(|h| !h.runs_on(&srv.spec)) {
                        let r = blank(
                            &label,
                            &srv.version,
                            s,
                            k,
                            &kver,
                            v,
                            Status::NotOffered,
                            format!("not offered: needs {} (the host acts on its nodes or reads their counters)", s.host.map(|h| h.kinds()).unwrap_or_default()),
                        );
                        println!("{}", progress_line(&r));
                        results.push(r);
                        continue;
                    }
                    if s.peer_vers.is_some() && !(srv.spec.has_gateway() && v == "3") {
                        let r = blank(
                            &label,
                            &srv.version,
                            s,
                            k,
                            &kver,
                            v,
                            Status::NotOffered,
                            "not offered: needs a cfs gateway (cfs-gateway, cfs-cluster-gateway), run at v3 (guest A's version)".into(),
                        );
                        println!("{}", progress_line(&r));
                        results.push(r);
                        continue;
                    }
                    run_id += 1;
                    let marks = srv
                        .spec
                        .is_cfs()
                        .then(|| srv.state_dir().map(failure_logs::mark))
                        .flatten();
                    let mut r = run_case(plan, &mut srv, s, k, &kver, v, run_id);
                    if r.reason
                        .as_deref()
                        .is_some_and(|x| x.starts_with("mount failed"))
                        || r.status == Status::NotOffered
                    {
                        refused = Some(r.clone());
                    }
                    if srv.spec.is_cfs() && matches!(r.status, Status::Fail | Status::Error) {
                        if let Some(d) = srv.state_dir() {
                            let keep = std::env::var_os("CFS_CONFORMANCE_KEEP").is_some();
                            let case = format!(
                                "{label}-{}-v{v}-{}-{}",
                                k.name(),
                                s.name,
                                std::process::id()
                            );
                            let saved = failure_logs::save(d, &case);
                            r.server_logs = Some(format!(
                                "{}{}{}",
                                d.display(),
                                if keep {
                                    ""
                                } else {
                                    " (removed at the end; CFS_CONFORMANCE_KEEP=1 keeps it)"
                                },
                                saved
                                    .map(|p| format!("; a copy of the logs: {}", p.display()))
                                    .unwrap_or_default()
                            ));
                            if let Some(m) = &marks {
                                r.server_log_tail = failure_logs::since(d, m);
                            }
                        }
                    }
                    if !srv.alive() {
                        r.reason = Some(format!(
                            "{} (server process died; log {:?})",
                            r.reason.unwrap_or_default(),
                            srv.log
                        ));
                        if r.status == Status::Pass {
                            r.status = Status::Fail;
                        }
                    }
                    println!("{}", progress_line(&r));
                    results.push(r);
                }
            }
        }
        srv.stop();
    }
    results
}

fn progress_line(r: &CaseResult) -> String {
    let mut l = format!(
        "[{} {} v{}] {:<10} {:<6} {:>6.1}s",
        r.server,
        r.kernel,
        r.vers,
        r.scenario,
        r.status.short(),
        r.duration_s
    );
    if r.retried {
        l.push_str(" (retried after boot crash)");
    }
    if let Some(why) = r.known_issue.as_deref().or(r.reason.as_deref()) {
        l.push_str("  ");
        l.push_str(&why.chars().take(160).collect::<String>());
    }
    if let Some(d) = &r.server_logs {
        l.push_str("\n    server logs: ");
        l.push_str(d);
    }
    if let Some(k) = r.host_ops.as_ref().and_then(|h| h.killed_ds.as_deref()) {
        l.push_str("\n    INFO: killed ");
        l.push_str(k);
    }
    if let Some(e) = &r.pnfs_evidence {
        l.push_str("\n    INFO: pnfs evidence: ");
        l.push_str(&e.summary());
        for f in &e.failures {
            l.push_str("\n    ");
            l.push_str(f);
        }
    }
    // The demo (scripts/demo.sh) shows what the host saw: the pause, where the bytes went.
    if std::env::var_os("CFS_CONFORMANCE_STEPS").is_some() {
        for step in r.host_ops.iter().flat_map(|h| &h.steps) {
            l.push_str("\n    ");
            l.push_str(step);
        }
    }
    l
}

#[allow(clippy::too_many_arguments)]
fn blank(
    server: &str,
    server_version: &str,
    s: &Scenario,
    k: KernelKind,
    kver: &str,
    vers: &str,
    status: Status,
    reason: String,
) -> CaseResult {
    CaseResult {
        server: server.into(),
        server_version: server_version.into(),
        scenario: s.name.into(),
        kernel: k.name().into(),
        kernel_version: kver.into(),
        vers: vers.into(),
        status,
        reason: Some(reason),
        known_issue: None,
        duration_s: 0.0,
        retried: false,
        retry_reason: None,
        metrics: BTreeMap::new(),
        mountstats: BTreeMap::new(),
        mountstats_other: BTreeMap::new(),
        mountstats_rtt_ms: BTreeMap::new(),
        pnfs: None,
        pnfs_evidence: None,
        host_ops: None,
        server_logs: None,
        server_log_tail: Vec::new(),
        checks_passed: 0,
        failures: Vec::new(),
        output: Vec::new(),
        console_tail: String::new(),
    }
}

fn job(
    plan: &Plan,
    srv: &Running,
    s: &Scenario,
    kver: &str,
    vers: &str,
    env: Vec<String>,
    smp: u32,
) -> GuestJob {
    let mut timeout = if plan.quick {
        s.timeout_quick
    } else {
        s.timeout_full
    };
    if let Some(n) = plan.seeds.filter(|_| takes_seeds(s)) {
        timeout += u64::from(n.saturating_sub(1)) * SECONDS_PER_SEED;
    }
    let mut env = env;
    if vers == "3" && srv.spec.has_gateway() {
        // the gateway speaks NLM: v3 guests lock through it (guest/init starts a status monitor)
        env.push("V3_NLM=1".into());
    }
    GuestJob {
        kver: kver.into(),
        port: srv.port_for(vers),
        vers: vers.into(),
        export: srv.export_for(vers).into(),
        mnt_port: srv.mnt_port,
        rpcbind: vers == "3" && srv.v3_rpcbind,
        script: paths::scenario_script(s.name),
        env,
        timeout: Duration::from_secs(timeout),
        smp,
        pcap: None,
    }
}

/// A scenario that runs seeds (its environment names SEEDS): `--seeds` and `--first-seed` apply.
fn takes_seeds(s: &Scenario) -> bool {
    s.quick_env.contains("SEEDS=")
}

fn base_env(plan: &Plan, s: &Scenario, run_id: u32) -> Vec<String> {
    let sizes = if plan.quick { s.quick_env } else { s.full_env };
    let mut env: Vec<String> = sizes.split_whitespace().map(str::to_owned).collect();
    // later assignments win when the guest sources its env file
    if takes_seeds(s) {
        if let Some(n) = plan.seeds {
            env.push(format!("SEEDS={n}"));
        }
        if let Some(f) = plan.first_seed {
            env.push(format!("SEED0={f}"));
        }
        // debugging aid: minimise for given calls ("SEED:CALL ...") instead of first differences
        if let Ok(t) = std::env::var("POSIXDIFF_TARGETS") {
            let t: String = t
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == ':' || *c == ' ')
                .collect();
            env.push(format!("POSIXDIFF_TARGETS='{t}'"));
        }
    }
    env.push(format!("SCENARIO={}", s.name));
    // unique across processes and repeated runs sharing one export
    env.push(format!("RUN_ID={}-{run_id}", std::process::id()));
    env.push(format!("QUICK={}", u8::from(plan.quick)));
    env.push(format!(
        "NFS4_UNIQUE_ID=cfsconf-{}-{run_id}",
        std::process::id()
    ));
    env
}

/// Boots at most this many times when a guest dies before its scenario starts. The sid kernel
/// (7.2) sometimes oopses on an int3 in `sched_clock_cpu` while patching its text under TCG with
/// two vCPUs; a CI run of ~40 sid boots once saw two such crashes in a row.
const BOOT_ATTEMPTS: usize = 3;

/// Boot the guest(s) for one case, again when a guest died before its scenario started.
fn boot(
    plan: &Plan,
    srv: &mut Running,
    s: &Scenario,
    kver: &str,
    vers: &str,
    run_id: u32,
    wire: Option<&wire::Capture>,
) -> (Vec<GuestRun>, Option<String>, Option<HostReport>) {
    let mut retry_reason = None;
    let mut host = None;
    for attempt in 0..BOOT_ATTEMPTS {
        let runs = if let Some(kind) = hostops::host_for(s, &srv.spec) {
            let (runs, rep) = with_host(plan, srv, s, kind, kver, vers, run_id);
            host = Some(rep);
            runs
        } else if s.two_clients {
            two_clients(plan, srv, s, kver, vers, run_id)
        } else {
            // A seeded run is one single-threaded program forking per call: a second vCPU only
            // adds TLB-shootdown IPIs, which TCG emulates slowly, and on a loaded host a guest
            // spinning on a lock whose holder's vCPU thread is descheduled. Measured on posix-diff
            // with two builds running beside it: 17 s per seed with 2 vCPUs, 6-9 s with 1.
            let smp = if takes_seeds(s) { 1 } else { 2 };
            let mut j = job(plan, srv, s, kver, vers, base_env(plan, s, run_id), smp);
            if let Some(w) = wire {
                let _ = std::fs::remove_file(&w.pcap);
                j.env.push(format!("WIRE_MARKER={}", w.marker));
                j.pcap = Some(w.pcap.clone());
            }
            vec![guest::run(&j).unwrap_or_else(|e| GuestRun {
                rc: 2,
                output: vec![format!("HARNESS: {e}")],
                ..GuestRun::default()
            })]
        };
        let boot_crash = runs.iter().any(|r| r.rc == RC_NO_EXIT && !r.script_started);
        if boot_crash && attempt + 1 < BOOT_ATTEMPTS {
            let tail: Vec<&str> = runs
                .iter()
                .flat_map(|r| r.console_tail.lines().rev().take(6).collect::<Vec<_>>())
                .collect();
            retry_reason = Some(format!(
                "guest crashed before the scenario started: {}",
                tail.join(" | ")
            ));
            eprintln!("[{}] {} boot crash, retrying", srv.spec.label(), s.name);
            continue;
        }
        return (runs, retry_reason, host);
    }
    (Vec::new(), retry_reason, host)
}

/// One guest (two, A and B, for a two-client scenario) plus the scenario's host steps
/// (`hostops`), all meeting at one rendezvous.
fn with_host(
    plan: &Plan,
    srv: &mut Running,
    s: &Scenario,
    kind: hostops::Kind,
    kver: &str,
    vers: &str,
    run_id: u32,
) -> (Vec<GuestRun>, HostReport) {
    let harness_err = |e: String| {
        let rep = HostReport {
            failures: vec![format!("FAIL: host: {e}")],
            ..HostReport::default()
        };
        let run = GuestRun {
            rc: 2,
            output: vec![format!("HARNESS: {e}")],
            ..GuestRun::default()
        };
        (vec![run], rep)
    };
    let rdv = match Rendezvous::start() {
        Ok(r) => r,
        Err(e) => return harness_err(e.to_string()),
    };
    // distinct seeds per case, never equal (the guest's file must not pass for the host's)
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed1 = (t ^ (u64::from(run_id) << 32)) % 1_000_000_007 + 1;
    let seed2 = seed1 + 1_000_000_007;
    let mut env = vec![
        format!("RDV_PORT={}", rdv.port),
        format!("SEED1={seed1}"),
        format!("SEED2={seed2}"),
    ];
    let jobs = if s.two_clients {
        // two guests and the host on one rendezvous (`wdeleg`): one vCPU each, as twoclient
        client_jobs(plan, srv, s, kver, vers, run_id, &env)
    } else {
        env.splice(0..0, base_env(plan, s, run_id));
        let mut j = job(plan, srv, s, kver, vers, env, 2);
        if kind == hostops::Kind::Evict {
            // lib.sh's `evict_all` steps with the host; each waits for an upload and an
            // evictor pass (a few seconds), the guest's bound grows by a margin for them
            j.env.push("EVICT=1".into());
            j.timeout += Duration::from_secs(120);
        }
        if kind == hostops::Kind::MdsLeaderFault {
            if let Some(p) = crate::mdsfault::mount_port(srv) {
                j.port = p;
            }
        }
        vec![j]
    };
    let ctx = hostops::Ctx {
        rdv: &rdv,
        wd: format!("/cfs-conf.{}.{}-{run_id}", s.name, std::process::id()),
        size_mib: file_bytes(plan, s).map_or(16, |b| b >> 20),
        seed1,
        seed2,
        step_timeout: jobs[0].timeout,
        kernel_release: kver.to_string(),
    };
    let rdv_ref = &rdv;
    let left = std::sync::atomic::AtomicUsize::new(jobs.len());
    let left = &left;
    std::thread::scope(|scope| {
        let guests: Vec<_> = jobs
            .iter()
            .map(|j| {
                scope.spawn(move || {
                    let r = guest::run(j);
                    // A guest that failed, or the last one to exit, releases host steps
                    // nobody will reach (a guest that passed may exit while its peer still
                    // steps with the host).
                    let last = left.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1;
                    if last || r.as_ref().map_or(true, |r| r.rc != 0) {
                        rdv_ref.post("abort");
                    }
                    r
                })
            })
            .collect();
        let rep = hostops::run(kind, srv, &ctx);
        let runs = join_guests(guests, s.two_clients);
        (runs, rep)
    })
}

/// Each guest's run; a guest the harness could not run is a HARNESS line. Two guests' lines
/// carry their role ("FAIL: [B] ...").
fn join_guests(
    guests: Vec<std::thread::ScopedJoinHandle<'_, crate::error::Result<GuestRun>>>,
    roles: bool,
) -> Vec<GuestRun> {
    guests
        .into_iter()
        .zip(["A", "B"])
        .map(|(h, role)| {
            let mut r = match h.join() {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => GuestRun {
                    rc: 2,
                    output: vec![format!("HARNESS: {e}")],
                    ..GuestRun::default()
                },
                Err(_) => GuestRun {
                    rc: 2,
                    output: vec!["HARNESS: guest thread panicked".into()],
                    ..GuestRun::default()
                },
            };
            if roles {
                for l in r.output.iter_mut() {
                    *l = prefix_role(l, role);
                }
            }
            r
        })
        .collect()
}

fn two_clients(
    plan: &Plan,
    srv: &Running,
    s: &Scenario,
    kver: &str,
    vers: &str,
    run_id: u32,
) -> Vec<GuestRun> {
    let rdv = match Rendezvous::start() {
        Ok(r) => r,
        Err(e) => {
            return vec![GuestRun {
                rc: 2,
                output: vec![format!("HARNESS: {e}")],
                ..GuestRun::default()
            }]
        }
    };
    let env = [format!("RDV_PORT={}", rdv.port)];
    let jobs = client_jobs(plan, srv, s, kver, vers, run_id, &env);
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|j| scope.spawn(move || guest::run(j)))
            .collect();
        join_guests(handles, true)
    })
}

/// The jobs of a two-client case: guest A and guest B (ROLE, their own client identity and
/// hostname, `env` added), one vCPU each. Against cfs-cluster-mds3, B mounts MDS node 2.
#[allow(clippy::too_many_arguments)]
fn client_jobs(
    plan: &Plan,
    srv: &Running,
    s: &Scenario,
    kver: &str,
    vers: &str,
    run_id: u32,
    env: &[String],
) -> Vec<GuestJob> {
    ["A", "B"]
        .iter()
        .map(|role| {
            let mut e = base_env(plan, s, run_id);
            e.push(format!("ROLE={role}"));
            // later assignments win when the guest sources its env file
            e.push(format!(
                "NFS4_UNIQUE_ID=cfsconf-{}-{run_id}-{role}",
                std::process::id()
            ));
            e.push(format!("GUEST_NAME=cfsguest-{role}"));
            e.extend(env.iter().cloned());
            let v = match (*role, s.peer_vers) {
                ("B", Some(p)) => p,
                _ => vers,
            };
            // two guests on two host cores: one vCPU each
            let mut j = job(plan, srv, s, kver, v, e, 1);
            if *role == "B" && v != "3" {
                if let Some(p) = srv.second_node_port() {
                    // Guest B talks to another MDS node than guest A: what one sees of the
                    // other's changes and locks then crosses nodes.
                    j.port = p;
                }
            }
            j
        })
        .collect()
}

/// "FAIL: x" from guest B becomes "FAIL: [B] x" so failure lines still start with FAIL.
fn prefix_role(line: &str, role: &str) -> String {
    for tag in ["PASS: ", "FAIL: ", "INFO: "] {
        if let Some(rest) = line.strip_prefix(tag) {
            return format!("{tag}[{role}] {rest}");
        }
    }
    format!("[{role}] {line}")
}

#[allow(clippy::too_many_arguments)]
fn run_case(
    plan: &Plan,
    srv: &mut Running,
    s: &Scenario,
    k: KernelKind,
    kver: &str,
    vers: &str,
    run_id: u32,
) -> CaseResult {
    // cfs-cluster's pnfs scenario is judged by the cluster's counters too
    let evidence = matches!(
        srv.spec,
        ServerSpec::CfsCluster | ServerSpec::CfsClusterNoWriteDeleg | ServerSpec::CfsMetaCluster
    ) && s.name == "pnfs";
    let before = evidence.then(|| srv.cluster_status()).flatten();
    let capture = (s.name == "wire")
        .then(|| wire::Capture::new(&crate::paths::cache_dir().join("runs"), run_id));
    let (runs, retry_reason, host) = boot(plan, srv, s, kver, vers, run_id, capture.as_ref());
    let mut r = judge(plan, srv, s, k, kver, vers, runs, retry_reason);
    if let Some(c) = capture {
        judge_wire(srv, &c, &mut r);
    }
    if let Some(h) = host {
        r.output.extend(h.steps.iter().cloned());
        r.output.extend(h.failures.iter().cloned());
        if !h.failures.is_empty() {
            r.failures.extend(h.failures.iter().cloned());
            if r.status == Status::Pass {
                r.status = Status::Fail;
                r.reason = Some(format!("{} host check(s) failed", h.failures.len()));
            }
        }
        r.host_ops = Some(h);
    }
    if let Some(before) = before {
        add_evidence(plan, srv, s, &mut r, before);
    }
    r
}

/// The `wire` scenario: the capture searched for the marker, judged by the mount's flavor.
fn judge_wire(srv: &Running, c: &wire::Capture, r: &mut CaseResult) {
    let flavor = crate::kerberos::active().map_or("sys".into(), |k| k.flavor());
    // `cfs cluster up` puts data server i after the MDS nodes: port + (MDS nodes - 1) + i.
    let first_ds = match srv.spec {
        ServerSpec::CfsCluster | ServerSpec::CfsClusterNoWriteDeleg => {
            Some((srv.port, server::CLUSTER_DS))
        }
        ServerSpec::CfsMetaCluster => {
            Some((srv.port + server::CLUSTER_MDS - 1, server::CLUSTER_DS))
        }
        ServerSpec::CfsClusterEc(n) => Some((srv.port, n)),
        ServerSpec::CfsClusterReduce { .. } => Some((srv.port, server::CLUSTER_DS)),
        _ => None,
    };
    let ds_ports: Vec<u16> = first_ds
        .map(|(b, n)| (1..=n).map(|i| b + i).collect())
        .unwrap_or_default();
    let (info, fails) = match std::fs::read(&c.pcap) {
        Ok(bytes) => match wire::scan(&bytes, c.marker.as_bytes()) {
            Ok(seen) => wire::judge(
                &seen,
                &flavor,
                // The port the case mounted: a gateway's NFSv3 port, not its NFSv4 one.
                srv.port_for(&r.vers),
                &ds_ports,
                c.file_bytes(),
            ),
            Err(e) => (Vec::new(), vec![format!("FAIL: wire: {:?}: {e}", c.pcap)]),
        },
        Err(e) => (
            Vec::new(),
            vec![format!("FAIL: wire: no capture {:?}: {e}", c.pcap)],
        ),
    };
    if std::env::var_os("CFS_CONFORMANCE_KEEP").is_none() {
        let _ = std::fs::remove_file(&c.pcap);
    }
    r.output.extend(info);
    r.output.extend(fails.iter().cloned());
    if !fails.is_empty() {
        r.failures.extend(fails);
        if r.status == Status::Pass {
            r.status = Status::Fail;
            r.reason = Some("the capture shows what the flavor must not".into());
        }
    }
}

/// File size of a scenario run (its SIZE_MIB), in bytes.
fn file_bytes(plan: &Plan, s: &Scenario) -> Option<u64> {
    let sizes = if plan.quick { s.quick_env } else { s.full_env };
    sizes
        .split_whitespace()
        .find_map(|w| w.strip_prefix("SIZE_MIB="))
        .and_then(|n| n.parse::<u64>().ok())
        .map(|m| m << 20)
}

/// Data-server counters reach the MDS with heartbeats (every second): wait, then read until two
/// readings a second apart agree (at most ~8 s).
fn settled_status(srv: &Running) -> crate::error::Result<server::ClusterStatus> {
    std::thread::sleep(Duration::from_millis(2500));
    let total = |c: &server::ClusterStatus| {
        c.data_servers
            .iter()
            .map(|d| d.read_bytes + d.write_bytes + d.commit_ops)
            .sum::<u64>()
            + c.mds.read_bytes
            + c.mds.write_bytes
    };
    let mut last = srv.cluster_status().expect("a cluster")?;
    for _ in 0..5 {
        std::thread::sleep(Duration::from_secs(1));
        let now = srv.cluster_status().expect("a cluster")?;
        let settled = total(&now) == total(&last);
        last = now;
        if settled {
            break;
        }
    }
    Ok(last)
}

fn add_evidence(
    plan: &Plan,
    srv: &Running,
    s: &Scenario,
    r: &mut CaseResult,
    before: crate::error::Result<server::ClusterStatus>,
) {
    if !matches!(r.status, Status::Pass | Status::Fail) {
        return;
    }
    let problem = |r: &mut CaseResult, line: String| {
        r.failures.push(line.clone());
        r.output.push(line);
        if r.status == Status::Pass {
            r.status = Status::Fail;
            r.reason = Some("pNFS evidence does not hold".into());
        }
    };
    let Some(bytes) = file_bytes(plan, s) else {
        problem(
            r,
            "FAIL: pnfs evidence: the scenario has no SIZE_MIB".into(),
        );
        return;
    };
    let (before, after) = match (before, settled_status(srv)) {
        (Ok(b), Ok(a)) => (b, a),
        (Err(e), _) | (_, Err(e)) => {
            problem(
                r,
                format!("FAIL: pnfs evidence: `cfs admin status --json` failed: {e}"),
            );
            return;
        }
    };
    let e = crate::evidence::evaluate(bytes, r.pnfs.as_deref(), &r.mountstats, &before, &after);
    let info = format!("INFO: pnfs evidence: {}", e.summary());
    for f in &e.failures {
        problem(r, f.clone());
    }
    if r.status != Status::Pass {
        r.output.push(info);
    }
    r.pnfs_evidence = Some(e);
}

#[allow(clippy::too_many_arguments)]
fn judge(
    plan: &Plan,
    srv: &Running,
    s: &Scenario,
    k: KernelKind,
    kver: &str,
    vers: &str,
    runs: Vec<GuestRun>,
    retry_reason: Option<String>,
) -> CaseResult {
    let label = srv.spec.label();
    let mut r = blank(
        &label,
        &srv.version,
        s,
        k,
        kver,
        vers,
        Status::Pass,
        String::new(),
    );
    r.reason = None;
    r.retried = retry_reason.is_some();
    r.retry_reason = retry_reason;
    r.duration_s = runs.iter().map(|g| g.wall).fold(0.0, f64::max);
    if let Some(kv) = runs.iter().find_map(|g| g.kernel.clone()) {
        r.kernel_version = kv;
    }
    for g in &runs {
        for (op, n) in &g.mountstats {
            *r.mountstats.entry(op.clone()).or_insert(0) += n;
        }
        for (op, n) in &g.mountstats_other {
            *r.mountstats_other.entry(op.clone()).or_insert(0) += n;
        }
        for (op, (n, ms)) in &g.mountstats_rtt {
            if *n > 0 {
                r.mountstats_rtt_ms
                    .insert(op.clone(), *ms as f64 / *n as f64);
            }
        }
        if r.pnfs.is_none() {
            r.pnfs = g.pnfs.clone();
        }
        r.metrics
            .extend(g.metrics.iter().map(|(a, b)| (a.clone(), *b)));
        r.checks_passed += g.output.iter().filter(|l| l.starts_with("PASS")).count();
        r.failures
            .extend(g.failures().into_iter().map(str::to_owned));
    }
    let mount_err = runs.iter().find_map(|g| g.mount_error.clone());
    let worst = runs.iter().map(|g| g.rc).find(|&rc| rc != 0);
    match (worst, mount_err) {
        (None, _) if !runs.is_empty() => {
            // a passing case keeps what the guests noted (wdeleg's "OPEN calls +0 under its
            // write delegation" is the kernel's side of the evidence)
            for g in &runs {
                r.output
                    .extend(g.output.iter().filter(|l| l.starts_with("INFO: ")).cloned());
            }
            return r;
        }
        (_, Some(e)) => {
            if plan.explicit_vers || srv.spec.promised(vers) {
                r.status = Status::Fail;
                r.reason = Some(format!("mount failed: {e}"));
            } else {
                r.status = Status::NotOffered;
                r.reason = Some(format!("not offered by server (mount refused: {e})"));
            }
        }
        (Some(RC_MOUNT_FAILED), None) => {
            r.status = Status::Fail;
            r.reason = Some("mount failed".into());
        }
        (Some(RC_TIMEOUT), _) => {
            r.status = Status::Fail;
            r.reason = Some(format!("guest timed out after {:.0} s", r.duration_s));
        }
        (Some(RC_NO_EXIT), _) => {
            r.status = Status::Fail;
            r.reason = Some("guest crashed or hung without an exit marker".into());
        }
        (Some(2), _)
            if runs
                .iter()
                .any(|g| g.output.iter().any(|l| l.starts_with("HARNESS"))) =>
        {
            r.status = Status::Error;
            r.reason = Some("harness error".into());
        }
        (Some(rc), _) => {
            r.status = Status::Fail;
            r.reason = Some(format!(
                "{} check(s) failed (guest exit {rc})",
                r.failures.len()
            ));
        }
        (None, None) => {
            r.status = Status::Error;
            r.reason = Some("guest did not run".into());
        }
    }
    if r.status == Status::Fail && !r.failures.is_empty() {
        if let Some(why) = known::classify(srv.spec.is_ganesha(), k, vers, &r.failures) {
            r.status = Status::KnownFail;
            r.known_issue = Some(why);
        }
    }
    for g in &runs {
        r.output.extend(g.output.iter().cloned());
        if g.rc == RC_NO_EXIT || g.rc == RC_TIMEOUT || g.rc == 2 {
            r.console_tail.push_str(&g.console_tail);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::ServerPlan;
    use crate::scenario;
    use crate::server::ServerSpec;
    use crate::setup::KernelKind;

    #[test]
    fn scenario_vers_restricts_only_the_named_scenario() {
        let sp = ServerPlan {
            spec: ServerSpec::Cfs,
            versions: vec!["4.1".into(), "4.2".into()],
            only: None,
            scenario_vers: vec![("posix-diff", &["4.1"])],
            scenario_kernels: Vec::new(),
            scenario_kernel_vers: Vec::new(),
        };
        let diff = scenario::find("posix-diff").expect("posix-diff exists");
        let posix = scenario::find("posix").expect("posix exists");
        let k = KernelKind::Sid;
        assert!(sp.runs_at(diff, k, "4.1"));
        assert!(!sp.runs_at(diff, k, "4.2"));
        assert!(sp.runs_at(posix, k, "4.1"));
        assert!(sp.runs_at(posix, k, "4.2"));
    }

    #[test]
    fn scenario_kernels_restricts_only_the_named_scenario() {
        let sp = ServerPlan {
            spec: ServerSpec::CfsCluster,
            versions: vec!["4.1".into()],
            only: None,
            scenario_vers: Vec::new(),
            scenario_kernels: vec![("pnfs-fault", KernelKind::Sid)],
            scenario_kernel_vers: Vec::new(),
        };
        let fault = scenario::find("pnfs-fault").expect("pnfs-fault exists");
        let posix = scenario::find("posix").expect("posix exists");
        assert!(sp.runs_at(fault, KernelKind::Sid, "4.1"));
        assert!(!sp.runs_at(fault, KernelKind::Bookworm, "4.1"));
        assert!(sp.runs_at(posix, KernelKind::Bookworm, "4.1"));
        assert!(sp.runs_at(posix, KernelKind::Sid, "4.1"));
    }

    #[test]
    fn scenario_kernel_vers_restricts_one_kernel_of_one_scenario() {
        let sp = ServerPlan {
            spec: ServerSpec::Cfs,
            versions: vec!["4.1".into(), "4.2".into()],
            only: None,
            scenario_vers: Vec::new(),
            scenario_kernels: Vec::new(),
            scenario_kernel_vers: vec![
                ("posix", KernelKind::Bookworm, "4.1"),
                ("posix", KernelKind::Sid, "4.2"),
            ],
        };
        let posix = scenario::find("posix").expect("posix exists");
        let bigdir = scenario::find("bigdir").expect("bigdir exists");
        assert!(sp.runs_at(posix, KernelKind::Bookworm, "4.1"));
        assert!(!sp.runs_at(posix, KernelKind::Bookworm, "4.2"));
        assert!(!sp.runs_at(posix, KernelKind::Sid, "4.1"));
        assert!(sp.runs_at(posix, KernelKind::Sid, "4.2"));
        assert!(sp.runs_at(bigdir, KernelKind::Sid, "4.1"));
        assert!(sp.runs_at(bigdir, KernelKind::Bookworm, "4.2"));
    }
}
