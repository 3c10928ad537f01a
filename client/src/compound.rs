//! Building COMPOUNDs and picking typed results out of the reply.
use crate::error::{Error, Result};
use proto::nfs4::*;
use proto::xdr::Opaque;

/// The operations of one COMPOUND (the SEQUENCE in front is added when it is sent).
#[derive(Debug, Clone, Default)]
pub struct CompoundBuilder {
    ops: Vec<NfsArgop4>,
}

impl CompoundBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn op(mut self, op: NfsArgop4) -> Self {
        self.ops.push(op);
        self
    }
    pub fn putfh(self, fh: &NfsFh4) -> Self {
        self.op(NfsArgop4::Putfh(PutfhArgs { object: fh.clone() }))
    }
    pub fn putrootfh(self) -> Self {
        self.op(NfsArgop4::Putrootfh)
    }
    pub fn lookup(self, name: &str) -> Self {
        self.op(NfsArgop4::Lookup(LookupArgs {
            objname: Opaque::from(name),
        }))
    }
    pub fn getfh(self) -> Self {
        self.op(NfsArgop4::Getfh)
    }
    pub fn getattr(self, bits: &[u32]) -> Self {
        self.op(NfsArgop4::Getattr(GetattrArgs {
            attr_request: Bitmap::from_bits(bits).to_vec(),
        }))
    }
    pub fn savefh(self) -> Self {
        self.op(NfsArgop4::Savefh)
    }
    pub fn restorefh(self) -> Self {
        self.op(NfsArgop4::Restorefh)
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn into_ops(self) -> Vec<NfsArgop4> {
        self.ops
    }
}

impl From<CompoundBuilder> for Vec<NfsArgop4> {
    fn from(b: CompoundBuilder) -> Self {
        b.ops
    }
}

fn missing(what: &str) -> Error {
    Error::Protocol(format!("reply lacks the {what} result"))
}

/// The file handle of the last GETFH.
pub fn last_fh(res: &[NfsResop4]) -> Result<NfsFh4> {
    res.iter()
        .rev()
        .find_map(|r| match r {
            NfsResop4::Getfh(GetfhRes::Ok(ok)) => Some(ok.object.clone()),
            _ => None,
        })
        .ok_or_else(|| missing("GETFH"))
}

/// The attributes of the last GETATTR.
pub fn last_attrs(res: &[NfsResop4]) -> Result<FileAttrs> {
    let f = res
        .iter()
        .rev()
        .find_map(|r| match r {
            NfsResop4::Getattr(GetattrRes::Ok(ok)) => Some(&ok.obj_attributes),
            _ => None,
        })
        .ok_or_else(|| missing("GETATTR"))?;
    Ok(FileAttrs::decode(f)?)
}

/// Applies `f` to each result and returns the first `Some`.
pub fn find<T>(res: &[NfsResop4], what: &str, f: impl Fn(&NfsResop4) -> Option<T>) -> Result<T> {
    res.iter().find_map(f).ok_or_else(|| missing(what))
}
