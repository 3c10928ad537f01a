//! Host side of the `snapshot` scenario (issue 48): the guest cannot reach the admin listener,
//! so the host takes and deletes the snapshot with the operator's own command, `cfs admin
//! snapshot create / --name NAME` and `cfs admin snapshot delete NAME`, against the server
//! under test. Steps, at the guest's rendezvous:
//!   tree written, remounted, manifest taken -> create (timed) -> "taken:NAME" -> the guest
//!   changes the live tree and compares `.snapshot/NAME` -> delete -> "deleted".
//! A snapshot the case took is deleted whatever happens, so the next case on the same server
//! meets no snapshot of `/` (whose images every later overwrite would make).

use crate::hostops::{Host, Stop};
use crate::server::Running;
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The snapshot's name: one per case (names are unique among a file system's snapshots, and a
/// server runs many cases), from the case's working directory ("/cfs-conf.snapshot.123-4").
pub fn name_for(wd: &str) -> String {
    let run = wd.rsplit('.').next().unwrap_or(wd);
    format!("conf-{run}")
}

/// The `cfs admin` arguments that reach the server's admin listener with a token: a cluster's
/// first MDS node's config (its `[admin] listen` and cluster secret); a single node's address
/// (it listens on a free port and writes it down) and a config naming its data directory,
/// whose `admin.secret` the token derives from (`metrics_cost::admin_of` writes it).
fn target(srv: &Running, bin: &Path) -> Result<Vec<OsString>, String> {
    if let Some(dir) = srv.cluster_dir() {
        let first = crate::server::mds_roles(dir)
            .into_iter()
            .next()
            .ok_or_else(|| format!("no MDS node listed in {:?}", dir.join("pids")))?;
        return Ok(vec![
            "--config".into(),
            dir.join(format!("{first}.toml")).into(),
        ]);
    }
    let admin = crate::metrics_cost::admin_of(srv, bin).map_err(|e| e.to_string())?;
    let conf = srv
        .state_dir()
        .ok_or("no state directory")?
        .join("admin-token.toml");
    Ok(vec![
        "--admin".into(),
        admin.addr.to_string().into(),
        "--config".into(),
        conf.into(),
    ])
}

/// `cfs admin snapshot ARGS... TARGET`: its output, or what it said when it failed.
fn admin_snapshot(srv: &Running, args: &[&str]) -> Result<String, String> {
    let bin = crate::server::cfs_binary().map_err(|e| e.to_string())?;
    let tg = target(srv, &bin)?;
    crate::procs::run(
        Command::new(&bin)
            .args(["admin", "snapshot"])
            .args(args)
            .args(&tg),
    )
    .map(|o| o.trim().to_string())
    .map_err(|e| e.to_string())
}

pub(crate) fn host(h: &mut Host, srv: &Running, taken: &mut Option<String>) -> Result<(), Stop> {
    h.await_guest("tree")?;
    let name = name_for(&h.ctx.wd);
    let t = Instant::now();
    match admin_snapshot(srv, &["create", "/", "--name", &name]) {
        Ok(out) => {
            *taken = Some(name.clone());
            h.info(format!(
                "`cfs admin snapshot create / --name {name}` took {:.2} s: {out}",
                t.elapsed().as_secs_f64()
            ));
        }
        Err(e) => return Err(h.fail(format!("cfs admin snapshot create / --name {name}: {e}"))),
    }
    h.ctx.rdv.post(&format!("taken:{name}"));
    h.await_guest("checked")?;
    delete(h, srv, taken)?;
    h.ctx.rdv.post("deleted");
    h.await_guest("done")?;
    Ok(())
}

/// Deletes the snapshot the case took, if it took one.
pub(crate) fn delete(h: &mut Host, srv: &Running, taken: &mut Option<String>) -> Result<(), Stop> {
    let Some(name) = taken.clone() else {
        return Ok(());
    };
    let t = Instant::now();
    match admin_snapshot(srv, &["delete", &name]) {
        Ok(_) => {
            *taken = None;
            h.info(format!(
                "`cfs admin snapshot delete {name}` took {:.2} s",
                t.elapsed().as_secs_f64()
            ));
            Ok(())
        }
        Err(e) => Err(h.fail(format!("cfs admin snapshot delete {name}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_per_case() {
        assert_eq!(name_for("/cfs-conf.snapshot.4242-7"), "conf-4242-7");
        assert_ne!(
            name_for("/cfs-conf.snapshot.4242-7"),
            name_for("/cfs-conf.snapshot.4242-8")
        );
    }

    #[test]
    fn the_snapshot_kinds_are_the_ones_with_an_admin_listener_the_host_finds() {
        use crate::hostops::Kind;
        use crate::server::ServerSpec;
        for k in [
            "cfs",
            "cfs-nowdeleg",
            "cfs-cluster",
            "cfs-cluster-nowdeleg",
            "cfs-cluster-mds3",
        ] {
            let s = ServerSpec::parse(k).expect("kind");
            assert!(Kind::Snapshot.runs_on(&s), "{k}");
        }
        for k in [
            "ganesha",
            "cfs-gateway",
            "cfs-cluster-ec3",
            "cfs-cluster-s3",
        ] {
            let s = ServerSpec::parse(k).expect("kind");
            assert!(!Kind::Snapshot.runs_on(&s), "{k}");
        }
    }
}
