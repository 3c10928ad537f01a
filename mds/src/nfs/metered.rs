//! What the request path tells `metrics` (the admin listener's `/metrics`): one call per
//! operation from `compound::run`, so handlers stay free of bookkeeping.
use crate::nfs::ctx::Ctx;
use crate::nfs::ops::table::{Bytes, OpInfo};
use proto::nfs4::compound::NfsResop4;
use std::time::Instant;

/// File bytes a READ or READ_PLUS result carries.
fn read_bytes(r: &NfsResop4) -> u64 {
    match r {
        NfsResop4::Read(proto::nfs4::fileops::ReadRes::Ok(ok)) => ok.data.len() as u64,
        NfsResop4::ReadPlus(proto::nfs4::v42::ReadPlusRes::Ok(ok)) => ok
            .rpr_contents
            .iter()
            .map(|c| match c {
                proto::nfs4::v42::ReadPlusContent::Data(d) => d.d_data.len() as u64,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// Records one operation of a COMPOUND: its latency and status under its number, the file
/// bytes it moved (which way: its table entry's `bytes`; `written`: a WRITE's payload), and
/// who did it to what for `top`. Returns
/// when it ended (None while metrics are off), which is when the next op starts: one clock
/// read per op instead of two (`metrics::cost`).
pub fn op_done(
    ctx: &Ctx<'_>,
    opnum: u32,
    info: &OpInfo,
    start: Option<Instant>,
    r: &NfsResop4,
    written: u64,
) -> Option<Instant> {
    start?;
    let status = r.status();
    let now = metrics::mds::OPS.done_at(opnum, start, status)?;
    let bytes = match (status, info.bytes) {
        (0, Bytes::Read) => read_bytes(r),
        (0, Bytes::Written) => written,
        _ => 0,
    };
    match info.bytes {
        Bytes::Read if bytes != 0 => metrics::mds::READ_BYTES.add(bytes),
        Bytes::Written if bytes != 0 => metrics::mds::WRITE_BYTES.add(bytes),
        _ => {}
    }
    metrics::mds::TOP.note_at(
        now,
        ctx.clientid.unwrap_or(0),
        ctx.cfh.unwrap_or(0),
        bytes,
        ctx.conn.peer_addr().ip(),
    );
    Some(now)
}
