//! RPCSEC_GSS from arbitrary bytes, as the `krb` layer meets it before any MIC is checked:
//! a call record whose credential and verifier are RPCSEC_GSS (the bytes the verifier's MIC
//! covers must lie inside the header, before the arguments), the credential body, the
//! context-creation argument and result, and the krb5i/krb5p bodies. Nothing panics, and
//! what decodes round-trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::rpc::gss::{
    decode_init_arg, decode_integ, decode_priv, split_seq, GssCred, GssInitRes,
};
use proto::rpc::{parse_message, Auth, Incoming, RECORD_HEADER_LEN, RPCSEC_GSS};
use proto::xdr::Writer;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        0 => {
            if let Ok(c) = GssCred::decode(rest) {
                assert_eq!(GssCred::decode(&c.encode()), Ok(c));
            }
        }
        1 => {
            if let Ok(r) = GssInitRes::decode(rest) {
                let mut w = Writer::new();
                r.encode(&mut w);
                assert_eq!(GssInitRes::decode(&w.buf), Ok(r));
            }
            let _ = decode_init_arg(rest);
        }
        2 => {
            if let Ok((d, _mic)) = decode_integ(rest, 1 << 20) {
                assert!(split_seq(d).is_ok());
            }
            if let Ok(p) = decode_priv(rest, 1 << 20) {
                let _ = split_seq(p);
            }
        }
        _ => {
            // A whole call record (synthetic record mark in front, as read_record leaves it).
            let mut rec = vec![0u8; RECORD_HEADER_LEN];
            rec.extend_from_slice(rest);
            let len = rec.len();
            if let Ok(Incoming::Call(c)) = parse_message(rec) {
                let hdr = c.header_through_cred();
                assert!(hdr.len() + c.args().len() <= len);
                if let Auth::Other { flavor, body } = &c.cred {
                    if *flavor == RPCSEC_GSS {
                        let _ = GssCred::decode(body);
                    }
                }
                if let Auth::Other { body, .. } = &c.verf {
                    assert!(body.len() <= len);
                }
            }
        }
    }
});
