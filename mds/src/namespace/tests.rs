//! Tests of the namespace: rules of each command, the redb store against the in-memory model,
//! group commit, and recovery after kill -9.

mod as_caller;
mod basic;
mod crash;
mod group;
mod model;

use super::*;

pub(super) const T0: Time = Time::new(1_700_000_000, 0);

pub(super) fn t(n: i64) -> Time {
    Time::new(T0.secs + n, 0)
}

pub(super) fn create(parent: u64, name: &str, ino: u64, kind: FileKind) -> Command {
    let mode = if kind.is_dir() { 0o755 } else { 0o644 };
    Command::Create {
        parent,
        name: name.as_bytes().to_vec(),
        ino,
        kind,
        mode,
        uid: 1000,
        gid: 1000,
        time: t(ino as i64),
        how: CreateHow::Guarded,
    }
}

/// A fresh in-memory state with its root.
pub(super) fn init() -> MemState {
    let mut s = MemState::default();
    apply(
        &mut s,
        &Command::InitRoot {
            fs_id: 42,
            time: T0,
        },
    )
    .unwrap();
    s
}

/// Applies through a staging layer, as the writer does, so failures leave no trace.
pub(super) fn step(s: &mut MemState, cmd: &Command) -> Result<Outcome, FsError> {
    let mut staged = state::Staged::new(&*s);
    let out = apply(&mut staged, cmd)?;
    staged.into_changes().flush_into(s)?;
    Ok(out)
}

pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}
