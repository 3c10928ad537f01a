//! RPCSEC_GSS (krb5, krb5i, krb5p); its issue has not come yet, so this crate is empty.
#![forbid(unsafe_code)]
