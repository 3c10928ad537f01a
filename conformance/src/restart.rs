//! Host side of `xattr`: the server restarted between the guest's setting of its extended
//! attributes and its reading them back (issue 44: they "survive a server restart").
//!
//! Steps, at the rendezvous: the guest has set every attribute ("set"); against single-node
//! cfs the host kills the server with -9 and runs the same command again (same port and data
//! directory, `Running::restart_single`), waits until it accepts connections, and posts
//! "restart:done"; the guest then reads every value back through its mount, which recovers
//! its client state on its own (no remount), before its drop_caches and remount checks.
//!
//! kill -9 rather than a stop: what a client was told is set must be on disk when it is told,
//! and a clean stop would not show it. The other kinds are not restarted here: the step says
//! so and posts "restart:none" at once, and the guest skips those reads (on cfs-cluster-mds3,
//! `mds-fault` at 4.2 kills the node the guest mounted with an attribute set at each step).

use crate::hostops::{Host, Stop};
use crate::server::{Running, ServerSpec};
use std::time::Instant;

pub(crate) fn host(h: &mut Host, srv: &mut Running) -> Result<(), Stop> {
    h.await_guest("set")?;
    if srv.spec != ServerSpec::Cfs {
        h.info(format!(
            "no restart on {} (single-node cfs only)",
            srv.spec.label()
        ));
        h.ctx.rdv.post("restart:none");
        return Ok(());
    }
    let old = srv.pid().unwrap_or(0);
    let t = Instant::now();
    let pid = match srv.restart_single() {
        Ok(pid) => pid,
        Err(e) => return Err(h.fail(format!("restart the server: {e}"))),
    };
    h.info(format!(
        "killed the server (pid {old}) with -9 and started it again (pid {pid}): accepting connections after {:.1} s",
        t.elapsed().as_secs_f64()
    ));
    h.ctx.rdv.post("restart:done");
    Ok(())
}
