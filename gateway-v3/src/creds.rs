//! Who a v3 call acts for: its AUTH_SYS credential after the export's squashing, sent upstream
//! as the credential of the NFSv4 COMPOUND that carries it, so the MDS checks permissions and
//! sets owners for that user (one session, many users: `client::Client::with_auth`).
use crate::exports::ExportRule;
use proto::rpc::{Auth, AuthSys};

/// AUTH_SYS allows 16 supplementary groups (RFC 5531 appendix A).
const MAX_GIDS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cred {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
    pub machine: Vec<u8>,
    /// AUTH_NONE: the export's anonymous identity.
    pub anonymous: bool,
}

impl Cred {
    /// The caller of a v3 call; None for a flavor the gateway does not speak (the call is
    /// refused with AUTH_TOOWEAK).
    pub fn from_auth(a: &Auth) -> Option<Cred> {
        match a {
            Auth::Sys(s) => Some(Cred {
                uid: s.uid,
                gid: s.gid,
                gids: s.gids.iter().copied().take(MAX_GIDS).collect(),
                machine: s.machine.clone(),
                anonymous: false,
            }),
            Auth::None => Some(Cred {
                uid: 65534,
                gid: 65534,
                gids: Vec::new(),
                machine: Vec::new(),
                anonymous: true,
            }),
            Auth::Other { .. } => None,
        }
    }

    /// As the export's rules make it: root squashed to the anonymous ids, AUTH_NONE to them.
    pub fn under(&self, rule: &ExportRule) -> Cred {
        if self.anonymous || (rule.root_squash && self.uid == 0) {
            return Cred {
                uid: rule.anon_uid,
                gid: rule.anon_gid,
                gids: Vec::new(),
                machine: self.machine.clone(),
                anonymous: true,
            };
        }
        // As the MDS's `Export::map_ids`: only uid 0 is squashed.
        self.clone()
    }

    /// The upstream credential.
    pub fn auth(&self) -> Auth {
        Auth::Sys(AuthSys {
            stamp: 0,
            machine: self.machine.iter().take(255).copied().collect(),
            uid: self.uid,
            gid: self.gid,
            gids: self.gids.clone(),
        })
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.gids.contains(&gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(uid: u32, gid: u32) -> Auth {
        Auth::Sys(AuthSys {
            stamp: 1,
            machine: b"h".to_vec(),
            uid,
            gid,
            gids: (0..40).collect(),
        })
    }

    #[test]
    fn root_is_squashed_only_where_the_export_says() {
        let mut rule = ExportRule::open("/", 1);
        let root = Cred::from_auth(&sys(0, 0)).unwrap();
        assert_eq!(root.gids.len(), MAX_GIDS);
        assert_eq!(root.under(&rule).uid, 0);
        rule.root_squash = true;
        let c = root.under(&rule);
        assert_eq!((c.uid, c.gid), (65534, 65534));
        let user = Cred::from_auth(&sys(1000, 0)).unwrap().under(&rule);
        assert_eq!((user.uid, user.gid), (1000, 0));
        let anon = Cred::from_auth(&Auth::None)
            .unwrap()
            .under(&ExportRule::open("/", 1));
        assert_eq!(anon.uid, 65534);
        assert!(Cred::from_auth(&Auth::Other {
            flavor: 6,
            body: vec![]
        })
        .is_none());
    }
}
