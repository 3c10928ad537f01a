//! GSS names from strings.
use crate::KrbError;
use libgssapi::name::Name;
use libgssapi::oid::{GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL};

/// A Kerberos principal (`nfs/host.example.com@REALM`, `alice@REALM`).
pub fn principal(p: &str) -> Result<Name, KrbError> {
    Name::new(p.as_bytes(), Some(GSS_NT_KRB5_PRINCIPAL)).map_err(|_| KrbError::BadName(p.into()))
}

/// A host-based service name (`nfs@host.example.com`), as clients name the server.
pub fn service(service: &str, host: &str) -> Result<Name, KrbError> {
    let s = format!("{service}@{host}");
    Name::new(s.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE)).map_err(|_| KrbError::BadName(s))
}
