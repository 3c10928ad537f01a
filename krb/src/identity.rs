//! Principals to local identities (uid, gid, groups): an explicit map first, then the
//! mechanism's own rule (krb5's `auth_to_local`: `alice@DEFAULT.REALM` is `alice`) looked up
//! in the system's name service, then host-based machine principals (`nfs/host@REALM`, which
//! the Linux client uses for its lease and, with a keytab, for root), then a fallback.
use std::collections::BTreeMap;
use std::ffi::CString;
use thiserror::Error;

/// Supplementary groups kept per caller (Linux's NGROUPS_MAX is 65536; knfsd's idmap upcall
/// caps a GSS caller's list the same way, so an unbounded list cannot grow every context).
pub const MAX_GROUPS: usize = 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IdentityError {
    #[error("identity {0:?}: expected a local user name or UID:GID")]
    BadTarget(String),
}

/// Where a principal lands: a local user (resolved through the name service each time a
/// context is made, so group changes apply to new contexts) or fixed ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User(String),
    /// `UID:GID` or `UID:GID:G1,G2,...` (supplementary groups).
    Ids {
        uid: u32,
        gid: u32,
        gids: Vec<u32>,
    },
}

impl std::str::FromStr for Target {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((u, rest)) = s.split_once(':') {
            let bad = || IdentityError::BadTarget(s.to_string());
            let (g, groups) = rest.split_once(':').unwrap_or((rest, ""));
            let gids = groups
                .split(',')
                .filter(|x| !x.is_empty())
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<Result<Vec<u32>, _>>()?;
            if gids.len() > MAX_GROUPS {
                return Err(bad());
            }
            return match (u.parse(), g.parse()) {
                (Ok(uid), Ok(gid)) => Ok(Target::Ids { uid, gid, gids }),
                _ => Err(bad()),
            };
        }
        if s.is_empty() || s.contains(['/', '@', '\0']) {
            return Err(IdentityError::BadTarget(s.to_string()));
        }
        Ok(Target::User(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Principal (as the client's ticket names it) to identity, checked first.
    pub map: BTreeMap<String, Target>,
    /// Host-based principals (`service/host@REALM`) not in `map`. None: they fall back.
    pub machine: Option<Target>,
    /// Principals that map to nobody. None refuses them: the context is not made, and the
    /// client's user gets "permission denied".
    pub fallback: Option<Target>,
}

impl Default for IdentityConfig {
    /// As knfsd: unknown principals (machine ones included) are nobody.
    fn default() -> Self {
        IdentityConfig {
            map: BTreeMap::new(),
            machine: None,
            fallback: Some(Target::Ids {
                uid: 65534,
                gid: 65534,
                gids: Vec::new(),
            }),
        }
    }
}

fn resolve(t: &Target) -> Option<Identity> {
    match t {
        Target::Ids { uid, gid, gids } => Some(Identity {
            uid: *uid,
            gid: *gid,
            gids: gids.clone(),
        }),
        Target::User(name) => user(name),
    }
}

/// A local user through the name service (files, LDAP, sssd: whatever nsswitch says).
pub fn user(name: &str) -> Option<Identity> {
    let u = nix::unistd::User::from_name(name).ok()??;
    let gids = CString::new(name)
        .ok()
        .and_then(|c| nix::unistd::getgrouplist(&c, u.gid).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g.as_raw())
        .filter(|g| *g != u.gid.as_raw())
        .take(MAX_GROUPS)
        .collect();
    Some(Identity {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        gids,
    })
}

/// A group's id by name, through the name service.
pub fn group(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

/// Whether a principal names a service on a host (`nfs/client.example.com@REALM`).
pub fn is_host_based(principal: &str) -> bool {
    principal
        .split_once('@')
        .map_or(principal, |(n, _)| n)
        .contains('/')
}

impl IdentityConfig {
    /// `local` is the mechanism's own local name for the principal, if it has one.
    pub fn map(&self, principal: &str, local: Option<&str>) -> Option<Identity> {
        if let Some(t) = self.map.get(principal) {
            return resolve(t);
        }
        if let Some(id) = local.and_then(user) {
            return Some(id);
        }
        if is_host_based(principal) {
            if let Some(id) = self.machine.as_ref().and_then(resolve) {
                return Some(id);
            }
        }
        self.fallback.as_ref().and_then(resolve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            "0:0".parse::<Target>(),
            Ok(Target::Ids {
                uid: 0,
                gid: 0,
                gids: vec![]
            })
        );
        assert_eq!(
            "7:8:9,10".parse::<Target>(),
            Ok(Target::Ids {
                uid: 7,
                gid: 8,
                gids: vec![9, 10]
            })
        );
        assert_eq!("root".parse::<Target>(), Ok(Target::User("root".into())));
        assert!("a/b".parse::<Target>().is_err());
        assert!("1:x".parse::<Target>().is_err());
        assert!("".parse::<Target>().is_err());
    }

    #[test]
    fn order_is_map_local_machine_fallback() {
        let mut c = IdentityConfig::default();
        c.map.insert(
            "boss@R".into(),
            Target::Ids {
                uid: 7,
                gid: 8,
                gids: vec![],
            },
        );
        c.machine = Some(Target::User("root".into()));
        assert_eq!(c.map("boss@R", Some("root")).map(|i| i.uid), Some(7));
        assert_eq!(c.map("x@R", Some("root")).map(|i| i.uid), Some(0));
        assert_eq!(c.map("nfs/h@R", None).map(|i| i.uid), Some(0));
        assert_eq!(c.map("nobody-here@R", None).map(|i| i.uid), Some(65534));
        c.fallback = None;
        assert_eq!(c.map("nobody-here@R", None), None);
        assert_eq!(
            c.map("x@R", Some("no-such-user-cfs-test")),
            None,
            "a local name without a local user is not a user"
        );
    }
}
