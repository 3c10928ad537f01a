//! Host side of `wdeleg` (issue 44, item 2): the server's own counters say whether the Linux
//! client got a write delegation, whether another client's GETATTR asked the holder about it
//! (CB_GETATTR) and whether another client's OPEN got it back; the guests (`scenarios/
//! wdeleg.sh`) say whether the bytes and sizes they see are right all along.
//!
//! Steps, at the rendezvous (A and B are the two guests; against cfs-cluster-mds3 B mounts
//! MDS node 2's client address, A node 1's):
//!   1. A creates, writes and closes f1 ("a-f1"): a write delegation was granted and is held
//!      (`cfs_mds_write_delegations_granted_total` and `cfs_mds_write_delegations` grew since
//!      the case began); "f1:held" or "f1:none" tells A which way to go on.
//!   2. A creates f2 and writes it, and holds it open ("a-f2"): a second grant, one held at
//!      least ("f2:held" / "f2:none"; f1's may already be back: Linux returns a delegation of a
//!      closed file it has not used for a lease renewal period, 7 s on the clusters' 10 s lease).
//!   3. B stats both files ("b-stat"): with f2 held, the server asked A (`cfs_mds_cb_getattr_total`
//!      grew; with three MDS nodes B's node recalls instead, so fewer are held), B checks it saw the size A's client has (the server may also have recalled the
//!      delegation there: A answers CB_GETATTR for a file with dirty pages with a moved change
//!      attribute).
//!   4. B reads both files ("b-read"): its OPENs recalled what A still held, A flushed and
//!      returned it, so held is back where it was when the case began (polled for up to 10 s).
//!
//! Against `cfs-nowdeleg` (`write_delegations = false`) the same steps must show no grant and
//! nothing held: the switch works, and the guests' checks then run on close-to-open alone.
//! Against the cluster kinds A writes the data servers through a layout: B's reads check the
//! size the MDS records when A returns a delegation without a LAYOUTCOMMIT
//! (`mds/src/state/settle.rs`).
//! Judgements are FAIL lines that do not stop the guests (`Host::problem`), so a server without
//! write delegations (the metrics absent) still gets its bytes checked; only a /metrics page
//! the host cannot read stops the case.

use crate::hostops::{Host, Stop};
use crate::metrics_cost::{self, Admin};
use crate::server::{Running, ServerSpec};
use std::time::{Duration, Instant};

const GRANTED: &str = "cfs_mds_write_delegations_granted_total";
const HELD: &str = "cfs_mds_write_delegations";
const ALL: &str = "cfs_mds_delegations";
const CB_GETATTR: &str = "cfs_mds_cb_getattr_total";
/// How long the held gauge may take to come back after B's reads (the DELEGRETURN was
/// answered before B's OPEN was, so normally no wait at all).
const RETURN_WAIT: Duration = Duration::from_secs(10);

/// One reading of the counters, summed over the MDS nodes; None: no node exports it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reading {
    pub granted: Option<f64>,
    pub held: Option<f64>,
    pub all: Option<f64>,
    pub cb_getattr: Option<f64>,
}

impl Reading {
    /// Summed over the pages of every node.
    pub fn of(pages: &[String]) -> Reading {
        let sum = |m: &str| {
            pages
                .iter()
                .filter_map(|p| metrics_cost::sample_sum(p, m))
                .fold(None, |s: Option<f64>, v| Some(s.unwrap_or(0.0) + v))
        };
        Reading {
            granted: sum(GRANTED),
            held: sum(HELD),
            all: sum(ALL),
            cb_getattr: sum(CB_GETATTR),
        }
    }

    fn line(&self) -> String {
        let v = |x: Option<f64>| x.map_or("absent".into(), |x| format!("{x:.0}"));
        format!(
            "write delegations granted {} held {}; delegations held (all kinds) {}; CB_GETATTR sent {}",
            v(self.granted),
            v(self.held),
            v(self.all),
            v(self.cb_getattr)
        )
    }
}

/// `now - base` of one counter; None when either reading lacks it.
fn grew(now: Option<f64>, base: Option<f64>) -> Option<f64> {
    Some(now? - base.unwrap_or(0.0))
}

/// What the host expects of a server kind: write delegations, or (cfs-nowdeleg) none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Granted,
    Off,
}

/// The judgement after A's `files`-th file: FAIL lines (empty: as expected) and whether a
/// write delegation is held now.
pub fn judge_grants(
    expect: Expect,
    files: f64,
    base: &Reading,
    now: &Reading,
) -> (Vec<String>, bool) {
    let granted = grew(now.granted, base.granted);
    let held = grew(now.held, base.held);
    let mut fails = Vec::new();
    let (Some(granted), Some(held)) = (granted, held) else {
        fails.push(format!(
            "{GRANTED} and {HELD} are not on any MDS node's /metrics: this server grants no write delegations (expected {})",
            match expect {
                Expect::Granted => format!(">= {files:.0} granted, >= 1 held"),
                Expect::Off => "0 granted, 0 held, and the counters there to say so".into(),
            }
        ));
        return (fails, false);
    };
    match expect {
        Expect::Granted => {
            if granted < files {
                fails.push(format!(
                    "write delegations granted since the case began: expected >= {files:.0} (one per file A created alone and opened for writing), got {granted:.0}"
                ));
            }
            if held < 1.0 {
                fails.push(format!(
                    "write delegations held right after A's file {files:.0}: expected >= 1 more than when the case began, got {held:+.0}"
                ));
            }
        }
        Expect::Off => {
            if granted != 0.0 || held > 0.0 {
                fails.push(format!(
                    "write_delegations = false: expected no write delegation granted or held, got {granted:.0} granted, {held:+.0} held"
                ));
            }
        }
    }
    (fails, granted >= files && held >= 1.0)
}

pub fn host(h: &mut Host, srv: &Running) -> Result<(), Stop> {
    // Every cfs kind grants them (new files are mirrored, also on the erasure-coded kinds),
    // unless switched off.
    let expect = match srv.spec {
        ServerSpec::CfsNoWriteDeleg | ServerSpec::CfsClusterNoWriteDeleg => Expect::Off,
        _ => Expect::Granted,
    };
    let admins = crate::server::cfs_binary()
        .and_then(|bin| metrics_cost::mds_admins(srv, &bin))
        .map_err(|e| h.fail(format!("the MDS nodes' admin listeners: {e}")))?;
    let names: Vec<String> = admins
        .iter()
        .map(|(n, a)| format!("{n} {}", a.addr))
        .collect();
    h.info(format!("reading /metrics of {}", names.join(", ")));
    // Before the guests have booted: whatever earlier cases left (a courtesy client's
    // delegation) is the baseline, not this case's.
    let base = read(h, &admins, "the case began")?;
    h.await_guest("a-f1")?;
    let f1 = read(h, &admins, "A created, wrote and closed f1")?;
    let (fails, f1_held) = judge_grants(expect, 1.0, &base, &f1);
    fails.into_iter().for_each(|f| h.problem(f));
    h.ctx.rdv.post(if f1_held { "f1:held" } else { "f1:none" });
    h.await_guest("a-f2")?;
    let f2 = read(h, &admins, "A created f2, wrote it and holds it open")?;
    let f2_held = if f2.granted.is_none() {
        // said once, after f1
        false
    } else {
        let (fails, held) = judge_grants(expect, 2.0, &base, &f2);
        fails.into_iter().for_each(|f| h.problem(f));
        held
    };
    h.ctx.rdv.post(if f2_held { "f2:held" } else { "f2:none" });
    h.await_guest("b-stat")?;
    let stat = read(h, &admins, "B stat f1 and f2")?;
    // Through another MDS node (B mounts node 2, A node 1) the server does not ask the holder
    // (CB_GETATTR goes out from the node that handed the delegation out only): B's GETATTR
    // recalls it there instead, so fewer are held.
    let elsewhere = srv.spec == ServerSpec::CfsMetaCluster;
    if f2_held {
        let recalled = grew(stat.held, f2.held).is_some_and(|d| d < 0.0);
        match grew(stat.cb_getattr, f2.cb_getattr) {
            Some(n) if n >= 1.0 => {}
            _ if elsewhere && recalled => {}
            n => h.problem(format!(
                "B's stat of f2, write-delegated to A: expected >= 1 CB_GETATTR sent ({CB_GETATTR}){}, got {}",
                if elsewhere { " or the delegation recalled" } else { "" },
                n.map_or("absent".into(), |n| format!("{n:.0}"))
            )),
        }
    }
    h.ctx.rdv.post("host-stat");
    h.await_guest("b-read")?;
    // B's OPENs recalled A's delegations; each was back before B's OPEN was answered.
    let t0 = Instant::now();
    let returned = loop {
        let r = read(h, &admins, "B read f1 and f2")?;
        let back = grew(r.held, base.held).is_some_and(|d| d <= 0.0);
        if back || r.held.is_none() || t0.elapsed() > RETURN_WAIT {
            break (r, back);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if expect == Expect::Granted && f1.held.is_some() && !returned.1 {
        h.problem(format!(
            "after B opened and read both files: expected {HELD} back at its value when the case began ({}), got {} ({} s later)",
            base.held.unwrap_or(0.0),
            returned.0.held.unwrap_or(0.0),
            RETURN_WAIT.as_secs()
        ));
    }
    h.ctx.rdv.post("host-read");
    Ok(())
}

/// Every node's page, or a FAIL that stops the case (the host cannot judge without them).
fn read(h: &mut Host, admins: &[(String, Admin)], at: &str) -> Result<Reading, Stop> {
    let mut pages = Vec::new();
    for (n, a) in admins {
        match metrics_cost::scrape_page(a) {
            Some(p) => pages.push(p),
            None => return Err(h.fail(format!("GET /metrics of {n} ({}) failed", a.addr))),
        }
    }
    let r = Reading::of(&pages);
    h.info(format!("{at}: {}", r.line()));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(granted: f64, held: f64) -> String {
        format!(
            "# HELP {GRANTED} x\n# TYPE {GRANTED} counter\n{GRANTED} {granted}\n{HELD} {held}\n{ALL} {held}\n{CB_GETATTR} 0\n"
        )
    }

    #[test]
    fn counters_are_summed_over_nodes_and_absent_ones_stay_absent() {
        let r = Reading::of(&[page(2.0, 1.0), page(1.0, 0.0)]);
        assert_eq!(r.granted, Some(3.0));
        assert_eq!(r.held, Some(1.0));
        assert_eq!(r.cb_getattr, Some(0.0));
        // today's main: no such metric anywhere
        let r = Reading::of(&["cfs_mds_delegations 4\ncfs_mds_write_delegations_x 1\n".into()]);
        assert_eq!(r.granted, None);
        assert_eq!(r.held, None);
        assert_eq!(r.all, Some(4.0));
    }

    #[test]
    fn a_grant_must_show_in_both_counters() {
        let base = Reading::of(&[page(5.0, 1.0)]);
        let (f, held) = judge_grants(Expect::Granted, 1.0, &base, &Reading::of(&[page(6.0, 2.0)]));
        assert!(f.is_empty() && held, "{f:?}");
        // granted but already back: held is what the recall checks need
        let (f, held) = judge_grants(Expect::Granted, 1.0, &base, &Reading::of(&[page(6.0, 1.0)]));
        assert_eq!((f.len(), held), (1, false), "{f:?}");
        // nothing granted (the server on main: absent)
        let (f, held) = judge_grants(Expect::Granted, 1.0, &base, &base);
        assert_eq!((f.len(), held), (2, false), "{f:?}");
        let none = Reading::default();
        let (f, held) = judge_grants(Expect::Granted, 2.0, &none, &none);
        assert_eq!((f.len(), held), (1, false), "{f:?}");
        assert!(f[0].contains("not on any MDS node"), "{f:?}");
    }

    #[test]
    fn the_switched_off_server_must_grant_nothing_and_say_so() {
        let base = Reading::of(&[page(0.0, 0.0)]);
        let (f, held) = judge_grants(Expect::Off, 2.0, &base, &base);
        assert!(f.is_empty() && !held, "{f:?}");
        let (f, _) = judge_grants(Expect::Off, 2.0, &base, &Reading::of(&[page(1.0, 1.0)]));
        assert_eq!(f.len(), 1, "{f:?}");
        // a binary without the counters cannot show the switch works
        let (f, _) = judge_grants(Expect::Off, 2.0, &Reading::default(), &Reading::default());
        assert_eq!(f.len(), 1, "{f:?}");
    }
}
