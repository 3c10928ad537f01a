//! A glance at a COMPOUND's arguments before they are decoded, for what a server must note
//! of a call as it arrives, in the connection's order (`rpc::CallHandler::arrived`): the file
//! handle a LAYOUTCOMMIT commits (the MDS's CLOSE waits for it: `mds::state::commits`).
//!
//! Only the shape Linux sends is recognised, SEQUENCE, PUTFH, LAYOUTCOMMIT, read with bounds
//! checks and no allocation; anything else answers `None` and is left to the full decode.
use super::basic::NFS4_FHSIZE;
use super::compound::{OP_LAYOUTCOMMIT, OP_PUTFH, OP_SEQUENCE};
use crate::xdr::Reader;

/// SEQUENCE4args: session id, sequence id, slot id, highest slot id, cachethis.
const SEQUENCE_ARGS_LEN: usize = 16 + 4 * 4;
/// Longer tags are not Linux's (it sends none): not worth reading past.
const TAG_MAX: usize = 64;

/// The file handle a COMPOUND's LAYOUTCOMMIT commits, if `args` is SEQUENCE, PUTFH,
/// LAYOUTCOMMIT, ...
pub fn layoutcommit_fh(args: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(args);
    r.opaque(TAG_MAX).ok()?;
    let _minor = r.u32().ok()?;
    if r.u32().ok()? < 3 || r.u32().ok()? != OP_SEQUENCE {
        return None;
    }
    r.take(SEQUENCE_ARGS_LEN).ok()?;
    if r.u32().ok()? != OP_PUTFH {
        return None;
    }
    let fh = r.opaque(NFS4_FHSIZE).ok()?;
    (r.u32().ok()? == OP_LAYOUTCOMMIT).then_some(fh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::Writer;

    fn compound(ops: &[(u32, &[u8])]) -> Vec<u8> {
        let mut w = Writer::new();
        w.opaque(b"");
        w.u32(2);
        w.u32(ops.len() as u32 + 1);
        w.u32(OP_SEQUENCE);
        w.fixed_opaque(&[7; SEQUENCE_ARGS_LEN]);
        for (op, body) in ops {
            w.u32(*op);
            w.fixed_opaque(body);
        }
        w.into_inner()
    }

    fn fh(bytes: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        w.opaque(bytes);
        w.into_inner()
    }

    #[test]
    fn the_handle_of_linuxs_layoutcommit_compound_is_found() {
        let args = compound(&[(OP_PUTFH, &fh(b"handle-1")), (OP_LAYOUTCOMMIT, &[0; 8])]);
        assert_eq!(layoutcommit_fh(&args), Some(&b"handle-1"[..]));
    }

    #[test]
    fn other_compounds_and_garbage_are_not() {
        // A CLOSE after PUTFH.
        let close = compound(&[(OP_PUTFH, &fh(b"handle-1")), (4, &[0; 8])]);
        assert_eq!(layoutcommit_fh(&close), None);
        // Cut anywhere, or a handle longer than NFS4_FHSIZE.
        let args = compound(&[(OP_PUTFH, &fh(b"handle-1")), (OP_LAYOUTCOMMIT, &[0; 8])]);
        for cut in 0..args.len() - 8 {
            assert_eq!(layoutcommit_fh(&args[..cut]), None, "cut at {cut}");
        }
        let long = compound(&[(OP_PUTFH, &fh(&[1; 129])), (OP_LAYOUTCOMMIT, &[])]);
        assert_eq!(layoutcommit_fh(&long), None);
        assert_eq!(layoutcommit_fh(&[0xff; 64]), None);
    }
}
