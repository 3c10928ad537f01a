//! A history of operations on registers (a file's bytes, or its size, or a name's existence,
//! all keyed by the file's name), recorded by concurrent clients during a fault test, and a
//! checker of three properties:
//!
//! 1. no acknowledged write lost: a read made after everything healed returns the value of a
//!    write that no later acknowledged write superseded;
//! 2. no stale read: a read returns the value of a write that may have happened before it
//!    ended, and no acknowledged write that began after that write ended completed before the
//!    read began (per-key register semantics; a read concurrent with a write may see either);
//! 3. no write through a node while it is cut off in the minority.
//!
//! Every written value is unique (a version number), so a read names the write it saw. An
//! operation whose outcome is not known (a timeout, a lost connection, an error after the
//! commit point was sent) may have taken effect at any time after it began, or never: it can
//! explain a read but never makes another value stale.
#![allow(dead_code)]
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a register holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Value {
    /// No such name.
    Absent,
    /// The bytes (or size) of write number N.
    Version(u64),
    /// Something no write wrote (a torn or corrupt file), described for the report.
    Garbage(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Absent => write!(f, "absent"),
            Value::Version(v) => write!(f, "v{v}"),
            Value::Garbage(g) => write!(f, "garbage ({g})"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: the call returned Ok.
    Ok,
    /// Certainly not applied (refused before anything was sent that could change the key).
    Fail,
    /// May or may not have been applied.
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Write(Value),
    Read(Value),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub client: usize,
    /// The MDS node (0-based) the client sent it to.
    pub node: usize,
    pub key: String,
    /// "put", "remove", "write", "read", "stat", "final", ...
    pub what: &'static str,
    pub kind: Kind,
    pub outcome: Outcome,
    /// Some call through `node` that changes state returned Ok (check 3).
    pub mutated: bool,
    /// Invocation and completion, since the history began.
    pub inv: Duration,
    pub cmp: Duration,
    /// The error, if any, for the report.
    pub error: Option<String>,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (rw, v) = match &self.kind {
            Kind::Write(v) => ("writes", v),
            Kind::Read(v) => ("reads", v),
        };
        write!(
            f,
            "[{:.3}s..{:.3}s] client {} via node {}: {} {} {rw} {v} -> {:?}",
            self.inv.as_secs_f64(),
            self.cmp.as_secs_f64(),
            self.client,
            self.node + 1,
            self.what,
            self.key,
            self.outcome
        )?;
        if let Some(e) = &self.error {
            write!(f, " ({e})")?;
        }
        Ok(())
    }
}

/// A node cut off from the others (its side is the minority) from `from` to `to`.
#[derive(Clone, Debug)]
pub struct Cut {
    pub node: usize,
    pub from: Duration,
    pub to: Duration,
}

/// The recorder: shared by the client tasks, cheap to append to.
pub struct History {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    cuts: Mutex<Vec<Cut>>,
}

impl Default for History {
    fn default() -> Self {
        History {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            cuts: Mutex::new(Vec::new()),
        }
    }
}

impl History {
    /// Time since the history began.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn push(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }

    pub fn cut(&self, c: Cut) {
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }

    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn cuts(&self) -> Vec<Cut> {
        self.cuts.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A final read (after healing) lost an acknowledged write.
    Lost,
    /// A read returned a value older than one written before it began.
    Stale,
    /// A read returned a value nobody wrote, with no write of that key under way.
    Phantom,
    /// A write through a node cut off in the minority succeeded.
    MinorityWrite,
}

#[derive(Clone, Debug)]
pub struct Violation {
    pub problem: Problem,
    pub op: Op,
    pub why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}\n    {}", self.problem, self.op, self.why)
    }
}

/// When a write may stop being the latest: its completion if acknowledged; never (for the
/// purpose of superseding it) if its outcome is unknown, since it may take effect late.
fn effective_end(w: &Op) -> Duration {
    match w.outcome {
        Outcome::Ok => w.cmp,
        _ => Duration::MAX,
    }
}

/// Checks every read of `ops` (and "final" reads, reported as lost writes) against the
/// writes, and every write against the cuts. Keys start absent unless a write says otherwise.
pub fn check(ops: &[Op], cuts: &[Cut]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut writes: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in ops {
        if matches!(op.kind, Kind::Write(_)) && op.outcome != Outcome::Fail {
            writes.entry(op.key.as_str()).or_default().push(op);
        }
    }
    // Every key's initial state: absent, written before the history began.
    let initial: HashMap<&str, Op> = ops
        .iter()
        .map(|op| {
            let w = Op {
                client: usize::MAX,
                node: usize::MAX,
                key: op.key.clone(),
                what: "initial",
                kind: Kind::Write(Value::Absent),
                outcome: Outcome::Ok,
                mutated: false,
                inv: Duration::ZERO,
                cmp: Duration::ZERO,
                error: None,
            };
            (op.key.as_str(), w)
        })
        .collect();
    for r in ops {
        let Kind::Read(v) = &r.kind else { continue };
        if r.outcome != Outcome::Ok {
            continue;
        }
        let mut all: Vec<&Op> = writes.get(r.key.as_str()).cloned().unwrap_or_default();
        if let Some(i) = initial.get(r.key.as_str()) {
            all.push(i);
        }
        // Writes of this value that may have happened before the read ended.
        let candidates: Vec<&&Op> = all
            .iter()
            .filter(|w| w.kind == Kind::Write(v.clone()) && w.inv < r.cmp)
            .collect();
        if candidates.is_empty() {
            if matches!(v, Value::Garbage(_)) {
                // A torn read while a write of the key was under way is not a register's
                // value, but it is not what this checker looks for either.
                let concurrent = all
                    .iter()
                    .any(|w| w.inv < r.cmp && effective_end(w) > r.inv && w.what != "initial");
                if concurrent {
                    continue;
                }
            }
            out.push(Violation {
                problem: Problem::Phantom,
                op: r.clone(),
                why: format!("no write of {v} to {} began before the read ended", r.key),
            });
            continue;
        }
        // A candidate is fine if no acknowledged write lies wholly between it and the read.
        let superseded_by = |x: &Op| -> Option<&Op> {
            all.iter()
                .filter(|w| w.outcome == Outcome::Ok && w.kind != x.kind)
                // The initial state precedes every write, even one that began at zero.
                .filter(|w| (effective_end(x) < w.inv || x.what == "initial") && w.cmp < r.inv)
                .max_by_key(|w| w.cmp)
                .copied()
        };
        if candidates.iter().any(|x| superseded_by(x).is_none()) {
            continue;
        }
        let x = candidates
            .iter()
            .max_by_key(|x| x.cmp)
            .expect("candidates is not empty");
        let w = superseded_by(x).expect("every candidate superseded");
        let problem = if r.what == "final" {
            Problem::Lost
        } else {
            Problem::Stale
        };
        out.push(Violation {
            problem,
            op: r.clone(),
            why: format!("saw {}, but {} had completed before the read began", x, w),
        });
    }
    for w in ops {
        if !w.mutated {
            continue;
        }
        for c in cuts {
            if w.node == c.node && w.inv > c.from && w.cmp < c.to {
                out.push(Violation {
                    problem: Problem::MinorityWrite,
                    op: w.clone(),
                    why: format!(
                        "node {} was cut off from {:.3}s to {:.3}s",
                        c.node + 1,
                        c.from.as_secs_f64(),
                        c.to.as_secs_f64()
                    ),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn op(what: &'static str, kind: Kind, outcome: Outcome, inv: u64, cmp: u64) -> Op {
        let mutated = matches!(kind, Kind::Write(_)) && outcome == Outcome::Ok;
        Op {
            client: 0,
            node: 0,
            key: "k".into(),
            what,
            kind,
            outcome,
            mutated,
            inv: ms(inv),
            cmp: ms(cmp),
            error: None,
        }
    }

    fn w(v: u64, outcome: Outcome, inv: u64, cmp: u64) -> Op {
        op("put", Kind::Write(Value::Version(v)), outcome, inv, cmp)
    }

    fn r(v: Value, inv: u64, cmp: u64) -> Op {
        op("read", Kind::Read(v), Outcome::Ok, inv, cmp)
    }

    fn problems(ops: &[Op], cuts: &[Cut]) -> Vec<Problem> {
        check(ops, cuts).into_iter().map(|v| v.problem).collect()
    }

    #[test]
    fn a_read_after_a_completed_write_that_sees_the_older_value_is_stale() {
        let h = [
            w(1, Outcome::Ok, 0, 10),
            w(2, Outcome::Ok, 20, 30),
            r(Value::Version(1), 40, 50),
        ];
        assert_eq!(problems(&h, &[]), [Problem::Stale]);
    }

    #[test]
    fn a_read_of_absent_after_a_completed_create_is_stale() {
        let h = [w(1, Outcome::Ok, 0, 10), r(Value::Absent, 20, 30)];
        assert_eq!(problems(&h, &[]), [Problem::Stale]);
        // A remove in between explains it.
        let h = [
            w(1, Outcome::Ok, 0, 10),
            op("remove", Kind::Write(Value::Absent), Outcome::Ok, 12, 15),
            r(Value::Absent, 20, 30),
        ];
        assert_eq!(problems(&h, &[]), []);
    }

    #[test]
    fn a_final_read_missing_an_acknowledged_write_is_a_lost_write() {
        let h = [
            w(1, Outcome::Ok, 0, 10),
            w(2, Outcome::Ok, 20, 30),
            op("final", Kind::Read(Value::Version(1)), Outcome::Ok, 90, 95),
        ];
        assert_eq!(problems(&h, &[]), [Problem::Lost]);
        let h = [
            w(1, Outcome::Ok, 0, 10),
            op("final", Kind::Read(Value::Absent), Outcome::Ok, 90, 95),
        ];
        assert_eq!(problems(&h, &[]), [Problem::Lost]);
    }

    #[test]
    fn a_value_nobody_wrote_is_a_phantom() {
        let h = [w(1, Outcome::Ok, 0, 10), r(Value::Version(7), 20, 30)];
        assert_eq!(problems(&h, &[]), [Problem::Phantom]);
        // A value whose write began only after the read ended cannot have been seen.
        let h = [r(Value::Version(1), 0, 10), w(1, Outcome::Ok, 20, 30)];
        assert_eq!(problems(&h, &[]), [Problem::Phantom]);
        // Garbage with no write under way.
        let h = [
            w(1, Outcome::Ok, 0, 10),
            r(Value::Garbage("torn".into()), 20, 30),
        ];
        assert_eq!(problems(&h, &[]), [Problem::Phantom]);
    }

    #[test]
    fn a_write_through_the_minority_during_a_cut_is_a_violation() {
        let mut x = w(1, Outcome::Ok, 20, 30);
        x.node = 2;
        let cut = Cut {
            node: 2,
            from: ms(10),
            to: ms(40),
        };
        assert_eq!(
            problems(std::slice::from_ref(&x), std::slice::from_ref(&cut)),
            [Problem::MinorityWrite]
        );
        // Through another node, or finishing after the heal, it is fine.
        let mut y = x.clone();
        y.node = 1;
        let mut z = x;
        z.cmp = ms(45);
        assert_eq!(problems(&[y, z], &[cut]), []);
    }

    #[test]
    fn concurrent_and_unknown_writes_may_or_may_not_be_seen() {
        let h = [
            w(1, Outcome::Ok, 0, 10),
            w(2, Outcome::Ok, 20, 40),
            // Concurrent with write 2: either value.
            r(Value::Version(1), 25, 35),
            r(Value::Version(2), 25, 35),
            // An unknown write may land any time after it began, or never.
            w(3, Outcome::Unknown, 50, 60),
            r(Value::Version(2), 70, 80),
            r(Value::Version(3), 90, 95),
            // And then it is still the latest (nothing acknowledged after it).
            r(Value::Version(2), 100, 110),
            // A failed write is never seen... but does not make anything stale either.
            w(4, Outcome::Fail, 120, 130),
            r(Value::Version(2), 140, 150),
            // Garbage while a write is under way is not this checker's business.
            w(5, Outcome::Ok, 160, 180),
            r(Value::Garbage("torn".into()), 165, 170),
            op(
                "final",
                Kind::Read(Value::Version(5)),
                Outcome::Ok,
                200,
                210,
            ),
        ];
        assert_eq!(problems(&h, &[]), []);
        let seen_failed = [w(4, Outcome::Fail, 0, 10), r(Value::Version(4), 20, 30)];
        assert_eq!(problems(&seen_failed, &[]), [Problem::Phantom]);
    }
}
