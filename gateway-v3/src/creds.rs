//! Who a v3 call acts for: its AUTH_SYS credential, or for RPCSEC_GSS the local ids its
//! principal maps to (`krb::GssLayer` verified the call and set `Call::gss`), after the
//! export's squashing; sent upstream as the AUTH_SYS credential of the NFSv4 COMPOUND that
//! carries it, so the MDS checks permissions and sets owners for that user (one session, many
//! users: `client::Client::with_auth`). See the README's gateway section for why the hop to
//! the cluster is AUTH_SYS.
use crate::exports::ExportRule;
use proto::rpc::gss::GssService;
use proto::rpc::{Auth, AuthSys, Call, AUTH_SYS};

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
    /// The flavor the call came in, as exports list it: `AUTH_SYS` (AUTH_NONE counts as
    /// sys, as on the MDS) or a Kerberos pseudo-flavor (`krb::PSEUDO_KRB5*`).
    pub flavor: u32,
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
                flavor: AUTH_SYS,
            }),
            Auth::None => Some(Cred {
                uid: 65534,
                gid: 65534,
                gids: Vec::new(),
                machine: Vec::new(),
                anonymous: true,
                flavor: AUTH_SYS,
            }),
            Auth::Other { .. } => None,
        }
    }

    /// The caller of a call as the server sees it: a verified RPCSEC_GSS caller
    /// (`Call::gss`, set only by `krb::GssLayer`) by its mapped ids, else as `from_auth`.
    pub fn from_call(call: &Call) -> Option<Cred> {
        let Some(g) = &call.gss else {
            return Cred::from_auth(&call.cred);
        };
        Some(Cred {
            uid: g.uid,
            gid: g.gid,
            gids: g.gids.iter().copied().take(MAX_GIDS).collect(),
            // The upstream AUTH_SYS machine name says who it was, for the MDS's logs.
            machine: g.principal.as_bytes().iter().take(255).copied().collect(),
            anonymous: false,
            flavor: pseudo_flavor(g.service),
        })
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
                flavor: self.flavor,
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

/// The pseudo-flavor (RFC 2623 §2.2.1) of an RPCSEC_GSS service.
pub fn pseudo_flavor(s: GssService) -> u32 {
    match s {
        GssService::None => PSEUDO_KRB5,
        GssService::Integrity => PSEUDO_KRB5I,
        GssService::Privacy => PSEUDO_KRB5P,
    }
}

/// The Kerberos pseudo-flavors (the same numbers as `krb::PSEUDO_KRB5*`).
pub const PSEUDO_KRB5: u32 = krb::PSEUDO_KRB5;
pub const PSEUDO_KRB5I: u32 = krb::PSEUDO_KRB5I;
pub const PSEUDO_KRB5P: u32 = krb::PSEUDO_KRB5P;

/// A flavor by its export name ("sys", "krb5", "krb5i", "krb5p").
pub fn flavor_by_name(name: &str) -> Option<u32> {
    Some(match name {
        "sys" => AUTH_SYS,
        "krb5" => PSEUDO_KRB5,
        "krb5i" => PSEUDO_KRB5I,
        "krb5p" => PSEUDO_KRB5P,
        _ => return None,
    })
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

    #[test]
    fn a_verified_gss_caller_acts_as_its_mapped_ids_under_its_pseudo_flavor() {
        use proto::rpc::gss::GssCaller;
        let mut rec = proto::rpc::encode_call(1, 100003, 3, 0, &Auth::None, &Auth::None).buf;
        rec.extend_from_slice(&[0; 4]);
        // the record mark: last fragment, the length after it
        let mark = 0x8000_0000u32 | (rec.len() as u32 - 4);
        rec[..4].copy_from_slice(&mark.to_be_bytes());
        let mut call = match proto::rpc::parse_message(rec) {
            Ok(proto::rpc::Incoming::Call(c)) => c,
            other => panic!("a call: {:?}", other.map(|_| ())),
        };
        assert_eq!(Cred::from_call(&call).unwrap().flavor, AUTH_SYS);
        call.gss = Some(GssCaller {
            service: GssService::Integrity,
            principal: "alice@R".into(),
            uid: 1234,
            gid: 99,
            gids: vec![7].into(),
        });
        let c = Cred::from_call(&call).unwrap();
        assert_eq!((c.uid, c.gid, c.gids.clone()), (1234, 99, vec![7]));
        assert_eq!(c.flavor, PSEUDO_KRB5I);
        let mut rule = ExportRule::open("/", 1);
        assert!(!rule.allows(c.flavor));
        rule.sec = vec![PSEUDO_KRB5P, PSEUDO_KRB5I];
        assert!(rule.allows(c.flavor));
        // squashing keeps the flavor
        rule.root_squash = true;
        let mut root = c.clone();
        root.uid = 0;
        assert_eq!(root.under(&rule).flavor, PSEUDO_KRB5I);
        assert_eq!(flavor_by_name("krb5p"), Some(PSEUDO_KRB5P));
        assert_eq!(flavor_by_name("none"), None);
    }
}
