//! The AUTH_SYS credential of the process behind each FUSE request: uid and gid from the
//! request, supplementary groups from `/proc/PID/status` (FUSE does not pass them; the kernel
//! NFS client sends them, and the server's permission checks use them). Looked-up groups are
//! cached per (pid, uid, gid) for a second: a process changes its groups rarely, and a `ls -l`
//! of a big directory would otherwise read /proc thousands of times.
use proto::rpc::{Auth, AuthSys};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// RFC 5531 allows 16 groups in AUTH_SYS.
const MAX_GROUPS: usize = 16;
const TTL: Duration = Duration::from_secs(1);
const MAX_CACHED: usize = 1024;

type Key = (u32, u32, u32);

pub struct Creds {
    machine: Vec<u8>,
    cache: Mutex<HashMap<Key, (Instant, Vec<u32>)>>,
}

impl Default for Creds {
    fn default() -> Self {
        Self::new()
    }
}

impl Creds {
    pub fn new() -> Creds {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        Creds {
            machine: host.into_bytes().into_iter().take(255).collect(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn auth(&self, uid: u32, gid: u32, pid: u32) -> Auth {
        Auth::Sys(AuthSys {
            stamp: 0,
            machine: self.machine.clone(),
            uid,
            gid,
            gids: self.groups(uid, gid, pid),
        })
    }

    fn groups(&self, uid: u32, gid: u32, pid: u32) -> Vec<u32> {
        // pid 0: a request the kernel makes on its own (writeback, release after exit).
        if pid == 0 {
            return Vec::new();
        }
        let key = (pid, uid, gid);
        let mut cache = match self.cache.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((at, g)) = cache.get(&key) {
            if at.elapsed() < TTL {
                return g.clone();
            }
        }
        let g = read_groups(pid);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), g.clone()));
        g
    }
}

fn read_groups(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| parse_groups(&s))
        .unwrap_or_default()
}

/// The `Groups:` line of a /proc status file.
pub fn parse_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .take(MAX_GROUPS)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_line_is_parsed_and_bounded() {
        let s = "Name:\tsh\nUid:\t1\t1\t1\t1\nGroups:\t2000 2001 \nNgid:\t0\n";
        assert_eq!(parse_groups(s), vec![2000, 2001]);
        assert!(parse_groups("Groups:\t\n").is_empty());
        let many: String = (0..40).map(|i| format!("{i} ")).collect();
        assert_eq!(parse_groups(&format!("Groups: {many}")).len(), MAX_GROUPS);
    }

    #[test]
    fn our_own_groups_are_found() {
        let c = Creds::new();
        let me = std::process::id();
        let Auth::Sys(a) = c.auth(5, 6, me) else {
            panic!("not AUTH_SYS")
        };
        assert_eq!((a.uid, a.gid), (5, 6));
        let want = parse_groups(&std::fs::read_to_string("/proc/self/status").unwrap());
        assert_eq!(a.gids, want);
    }
}
