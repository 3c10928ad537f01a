//! Per-export security flavors (RFC 8881 §2.6.3.1): which operations answer NFS4ERR_WRONGSEC
//! when the call's flavor (sys, krb5, krb5i, krb5p) is not one its export allows. As knfsd:
//! the put-filehandle operations check on behalf of the operation after them, unless that one
//! checks for itself (LOOKUP, LOOKUPP, OPEN, SECINFO, SECINFO_NO_NAME); LOOKUP and LOOKUPP
//! check the export they arrive in, and OPEN the directory's. The pseudo file system admits
//! every flavor (it shows only the names leading to exports, and SECINFO there says what each
//! export wants). Operations that use no file handle (the session and client-ID operations a
//! Linux client sends with its krb5i machine credential) are never refused here.
use crate::error::NfsError;
use crate::export::PSEUDO_ID;
use crate::nfs::ctx::Ctx;
use crate::nfs::ops::table;
use proto::nfs4::compound::{NfsArgop4, OP_LOOKUP, OP_LOOKUPP};

/// Whether the current file handle's export allows the call's flavor.
pub fn allowed(ctx: &Ctx<'_>) -> bool {
    ctx.cexp == PSEUDO_ID
        || ctx
            .export
            .allows(ctx.cred.flavor(), ctx.conn.peer_addr().ip())
}

/// Operations that return WRONGSEC themselves, so the PUTFH before them does not
/// (`table::CHECKS_OWN_SEC`).
pub fn checks_own_sec(op: &NfsArgop4) -> bool {
    table::info(op.opnum()).has(table::CHECKS_OWN_SEC)
}

fn putfh_like(opnum: u32) -> bool {
    table::info(opnum).has(table::PUTS_FH)
}

fn lookup_like(opnum: u32) -> bool {
    matches!(opnum, OP_LOOKUP | OP_LOOKUPP)
}

/// Before an operation runs: OPEN in a directory whose export refuses the flavor.
pub fn before(ctx: &Ctx<'_>, op: &NfsArgop4) -> Option<NfsError> {
    (matches!(op, NfsArgop4::Open(_)) && ctx.cfh.is_some() && !allowed(ctx))
        .then_some(NfsError::WrongSec)
}

/// The number of an operation `after` may refuse, kept for building its error result once
/// the original has been consumed (the number is all an error result needs: no copy of a
/// PUTFH's handle per COMPOUND, METADATA-BENCH run 17).
pub fn kept(op: &NfsArgop4) -> Option<u32> {
    let opnum = op.opnum();
    (putfh_like(opnum) || lookup_like(opnum)).then_some(opnum)
}

/// After operation `opnum` succeeded: `next_checks_own` is None when it was the last operation.
pub fn after(
    ctx: &Ctx<'_>,
    opnum: u32,
    status: u32,
    next_checks_own: Option<bool>,
) -> Option<NfsError> {
    if status != 0 || allowed(ctx) {
        return None;
    }
    let refuse = if putfh_like(opnum) {
        // RFC 8881 §2.6.3.1.1.6: a put-filehandle whose result nothing uses is not refused.
        next_checks_own == Some(false)
    } else {
        lookup_like(opnum)
    };
    refuse.then_some(NfsError::WrongSec)
}
