//! Credentials a call arrives with.
use onc_rpc::auth::AuthFlavor;

pub const AUTH_NONE: u32 = 0;
pub const AUTH_SYS: u32 = 1;
pub const RPCSEC_GSS: u32 = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSys {
    pub stamp: u32,
    pub machine: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub gids: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Sys(AuthSys),
    /// Any other flavor (RPCSEC_GSS included), kept raw for the layer that understands it.
    Other {
        flavor: u32,
        body: Vec<u8>,
    },
}

impl Auth {
    pub fn flavor(&self) -> u32 {
        match self {
            Auth::None => AUTH_NONE,
            Auth::Sys(_) => AUTH_SYS,
            Auth::Other { flavor, .. } => *flavor,
        }
    }

    pub(crate) fn from_flavor(f: &AuthFlavor<&[u8]>) -> Self {
        match f {
            AuthFlavor::AuthNone(_) => Auth::None,
            AuthFlavor::AuthUnix(p) => Auth::Sys(AuthSys {
                stamp: p.stamp(),
                machine: p.machine_name().to_vec(),
                uid: p.uid(),
                gid: p.gid(),
                gids: p.gids().map(|g| g.to_vec()).unwrap_or_default(),
            }),
            AuthFlavor::AuthShort(b) => Auth::Other {
                flavor: 2,
                body: b.to_vec(),
            },
            AuthFlavor::Unknown { id, data } => Auth::Other {
                flavor: *id,
                body: data.to_vec(),
            },
            // onc-rpc marks AuthFlavor non-exhaustive.
            _ => Auth::Other {
                flavor: f.id(),
                body: Vec::new(),
            },
        }
    }

    /// Wire form (`opaque_auth`).
    pub fn encode(&self, w: &mut crate::xdr::Writer) {
        match self {
            Auth::None => {
                w.u32(AUTH_NONE);
                w.u32(0);
            }
            Auth::Sys(s) => {
                let mut b = crate::xdr::Writer::new();
                b.u32(s.stamp);
                b.opaque(&s.machine);
                b.u32(s.uid);
                b.u32(s.gid);
                b.u32(s.gids.len() as u32);
                for g in &s.gids {
                    b.u32(*g);
                }
                w.u32(AUTH_SYS);
                w.opaque(&b.buf);
            }
            Auth::Other { flavor, body } => {
                w.u32(*flavor);
                w.opaque(body);
            }
        }
    }
}
