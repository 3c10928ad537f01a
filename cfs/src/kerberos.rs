//! `[kerberos]`: the server's keytab and how principals map to local users. RPCSEC_GSS is
//! answered when this section is present or an export allows a krb5 flavor; otherwise such
//! calls get AUTH_TOOWEAK.
//!
//! ```toml
//! [kerberos]
//! keytab = "/etc/krb5.keytab"          # the default
//! principal = "nfs/server.example.com@EXAMPLE.COM"   # default: any key in the keytab
//! machine = "root"                     # nfs/host@REALM principals (default: as fallback)
//! fallback = "65534:65534"             # principals that are no local user; "refuse" denies them
//! max_contexts = 4096
//! [kerberos.principals]                # checked first: principal = local user, UID:GID or UID:GID:G1,G2
//! "backup@EXAMPLE.COM" = "0:0"
//! ```
use crate::config::FileConfig;
use krb::{Acceptor, AcceptorConfig, Target};
use mds::config::SecFlavor;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct KerberosConfig {
    pub keytab: Option<PathBuf>,
    pub principal: Option<String>,
    pub machine: Option<String>,
    pub fallback: Option<String>,
    pub max_contexts: Option<usize>,
    #[serde(default)]
    pub principals: BTreeMap<String, String>,
}

#[derive(Debug, Error)]
pub enum KerberosError {
    #[error("[kerberos] {0}")]
    Identity(#[from] krb::identity::IdentityError),
    #[error("[kerberos] max_contexts must be at least 1")]
    MaxContexts,
    #[error("kerberos: {0} (keytab {1})")]
    Acceptor(krb::KrbError, String),
}

/// Whether this server answers RPCSEC_GSS.
pub fn wanted(file: &FileConfig) -> bool {
    file.kerberos.is_some()
        || file.exports.iter().any(|e| {
            e.sec
                .iter()
                .flatten()
                .any(|s| s.parse::<SecFlavor>().is_ok_and(|f| f != SecFlavor::Sys))
        })
}

/// Before any thread starts (see `krb::use_keytab`).
pub fn set_keytab(file: &FileConfig) {
    if let Some(k) = file.kerberos.as_ref().and_then(|k| k.keytab.as_ref()) {
        krb::use_keytab(k);
    }
}

pub fn acceptor(file: &FileConfig) -> Result<Option<Arc<Acceptor>>, KerberosError> {
    if !wanted(file) {
        return Ok(None);
    }
    let k = file.kerberos.clone().unwrap_or_default();
    let mut cfg = AcceptorConfig::default();
    for (p, t) in &k.principals {
        cfg.identity.map.insert(p.clone(), t.parse::<Target>()?);
    }
    cfg.identity.machine = k.machine.as_deref().map(str::parse).transpose()?;
    cfg.identity.fallback = match k.fallback.as_deref() {
        None => cfg.identity.fallback,
        Some("refuse") => None,
        Some(t) => Some(t.parse()?),
    };
    if let Some(m) = k.max_contexts {
        if m == 0 {
            return Err(KerberosError::MaxContexts);
        }
        cfg.max_contexts = m;
    }
    cfg.principal = k.principal.clone();
    let keytab = std::env::var("KRB5_KTNAME").unwrap_or_else(|_| "/etc/krb5.keytab".into());
    Acceptor::new(cfg)
        .map(Some)
        .map_err(|e| KerberosError::Acceptor(e, keytab))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_krb5_export_or_the_section_turns_it_on() {
        let f: FileConfig = toml::from_str("[[export]]\npath = \"/\"\nsec = [\"sys\"]\n").unwrap();
        assert!(!wanted(&f));
        let f: FileConfig =
            toml::from_str("[[export]]\npath = \"/\"\nsec = [\"krb5p\", \"sys\"]\n").unwrap();
        assert!(wanted(&f));
        let f: FileConfig = toml::from_str(
            "[kerberos]\nkeytab = \"/k\"\nmachine = \"root\"\nfallback = \"refuse\"\n\
             [kerberos.principals]\n\"a@R\" = \"1:2\"\n",
        )
        .unwrap();
        assert!(wanted(&f));
        let k = f.kerberos.unwrap();
        assert_eq!(k.principals["a@R"], "1:2");
    }
}
