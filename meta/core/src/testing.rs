//! What the tests of this crate and of the crates above it share: a fresh state, commands
//! applied as the state machine applies them, and the check that holds encodings to the bytes
//! an earlier build wrote (`tests::encodings` here, and the pinned encodings of `meta` and
//! `mds`). Not for use outside tests.

use crate::apply::{apply, apply_on_shard};
use crate::command::{Command, CreateHow};
use crate::error::FsError;
use crate::object::{FileKind, Outcome, Time};
use crate::shard::ShardId;
use crate::state::{self, MemState};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares every `(name, value's bytes)` with `golden`, and on a difference prints the whole
/// table as it is now, so a deliberate addition can be pasted in.
pub fn check(now: &[(&str, Vec<u8>)], golden: &[(&str, &str)]) {
    let now: Vec<(String, String)> = now.iter().map(|(n, b)| (n.to_string(), hex(b))).collect();
    let golden: Vec<(String, String)> = golden
        .iter()
        .map(|(n, h)| (n.to_string(), h.to_string()))
        .collect();
    if now != golden {
        let mut table = String::new();
        for (n, h) in &now {
            table.push_str(&format!("    (\"{n}\", \"{h}\"),\n"));
        }
        for ((n, h), (gn, gh)) in now.iter().zip(&golden) {
            if n != gn || h != gh {
                eprintln!("first difference: {n} = {h}, pinned {gn} = {gh}");
                break;
            }
        }
        panic!(
            "encodings changed ({} now, {} pinned); now:\n{table}",
            now.len(),
            golden.len()
        );
    }
}

pub const T0: Time = Time::new(1_700_000_000, 0);

pub fn t(n: i64) -> Time {
    Time::new(T0.secs + n, 0)
}

/// Creates `name` in `parent`; `apply` numbers it in the parent's shard.
pub fn create(parent: u64, name: &str, kind: FileKind) -> Command {
    let mode = if kind.is_dir() { 0o755 } else { 0o644 };
    Command::Create {
        parent,
        name: name.as_bytes().to_vec(),
        kind,
        mode,
        uid: 1000,
        gid: 1000,
        time: t(1),
        how: CreateHow::Guarded,
    }
}

/// Applies a create and returns the new inode's number.
pub fn made(s: &mut MemState, cmd: Command) -> u64 {
    let out = step(s, &cmd).unwrap_or_else(|e| panic!("{cmd:?}: {e:?}"));
    out.inode.expect("created inode").ino
}

/// The object `dir/name` names now (0 when none: commands built with it find the name free).
pub fn child(s: &MemState, dir: u64, name: &str) -> u64 {
    s.dirents
        .get(&(dir, name.as_bytes().to_vec()))
        .map(|(i, _)| *i)
        .unwrap_or(0)
}

/// A fresh in-memory state with its root.
pub fn init() -> MemState {
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
pub fn step(s: &mut MemState, cmd: &Command) -> Result<Outcome, FsError> {
    let mut staged = state::Staged::new(&*s);
    let out = apply(&mut staged, cmd)?;
    staged.into_changes().flush_into(s)?;
    Ok(out)
}

/// `step` as shard `shard`'s state machine applies a command of its log.
pub fn step_on(shard: ShardId, s: &mut MemState, cmd: &Command) -> Result<Outcome, FsError> {
    let mut staged = state::Staged::new(&*s);
    let out = apply_on_shard(shard, &mut staged, cmd)?;
    staged.into_changes().flush_into(s)?;
    Ok(out)
}
