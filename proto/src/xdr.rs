//! XDR (RFC 4506) runtime: a bounded reader, a writer, and the `Xdr` trait that
//! `#[derive(Xdr)]` implements. Every length read from the wire is checked against what is
//! left in the buffer before anything is allocated, so a hostile length costs nothing.
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum XdrError {
    #[error("unexpected end of XDR data")]
    Eof,
    #[error("length {len} exceeds limit {max}")]
    TooLong { len: usize, max: usize },
    #[error("invalid enum value {0}")]
    BadEnum(u32),
    #[error("invalid union discriminant {0}")]
    BadUnion(u32),
    #[error("invalid boolean {0}")]
    BadBool(u32),
    #[error("string is not UTF-8")]
    Utf8,
    #[error("nesting too deep")]
    TooDeep,
    #[error("non-zero padding")]
    Padding,
}

pub type Result<T> = std::result::Result<T, XdrError>;

/// Recursive types (optional linked lists) could otherwise exhaust the stack.
const MAX_DEPTH: u32 = 64;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: u32,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            depth: 0,
        }
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(XdrError::Eof);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// Variable-length opaque: length, bytes, padding to 4.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        self.fixed_opaque(len)
    }
    pub fn fixed_opaque(&mut self, len: usize) -> Result<&'a [u8]> {
        let data = self.take(len)?;
        let pad = (4 - len % 4) % 4;
        // Padding is read but not checked: Linux and knfsd are lenient here and so are we.
        self.take(pad)?;
        Ok(data)
    }
    /// A count of elements that each take at least 4 bytes on the wire: anything larger than
    /// what is left is rejected before allocating.
    pub fn count(&mut self, max: usize, min_elem: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(XdrError::TooLong { len: n, max });
        }
        if min_elem > 0 && n > self.remaining() / min_elem {
            return Err(XdrError::Eof);
        }
        Ok(n)
    }
    pub fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(XdrError::TooDeep);
        }
        Ok(())
    }
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

#[derive(Default, Debug, Clone)]
pub struct Writer {
    pub buf: Vec<u8>,
    /// Payloads that follow `buf[..at]` on the wire but are not copied into `buf` (see
    /// `opaque_shared`). Empty unless that method is used, so code that only looks at `buf`
    /// keeps working for every other message.
    shared: Vec<(usize, bytes::Bytes)>,
}

/// Below this a shared payload is copied anyway: a separate segment costs an iovec and a
/// refcount, which only pays off for bulk data.
const SHARE_MIN: usize = 4096;

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
            shared: Vec::new(),
        }
    }
    /// Bytes in `buf`, i.e. not counting shared payloads (positions for `patch_u32`).
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.shared.is_empty()
    }
    /// Length of the whole message, shared payloads included.
    pub fn total_len(&self) -> usize {
        self.buf.len() + self.shared.iter().map(|(_, b)| b.len()).sum::<usize>()
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn opaque(&mut self, data: &[u8]) {
        self.u32(data.len() as u32);
        self.fixed_opaque(data);
    }
    pub fn fixed_opaque(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let pad = (4 - data.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
    }
    /// Variable-length opaque whose bytes are referenced rather than copied (READ payloads):
    /// the message then consists of `buf` with the payload spliced in, see `segments`.
    pub fn opaque_shared(&mut self, data: bytes::Bytes) {
        if data.len() < SHARE_MIN {
            return self.opaque(&data);
        }
        self.u32(data.len() as u32);
        let pad = (4 - data.len() % 4) % 4;
        self.shared.push((self.buf.len(), data));
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
    }
    /// The message in wire order: pieces of `buf` interleaved with the shared payloads.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        let mut pos = 0;
        let tail_at = self.shared.last().map_or(0, |(at, _)| *at);
        self.shared
            .iter()
            .flat_map(move |(at, b)| {
                let head = &self.buf[pos..*at];
                pos = *at;
                [head, &b[..]]
            })
            .chain(std::iter::once(&self.buf[tail_at..]))
            .filter(|s| !s.is_empty())
    }
    /// Splits into `buf` and the shared payloads with their positions in `buf`.
    pub fn into_parts(self) -> (Vec<u8>, Vec<(usize, bytes::Bytes)>) {
        (self.buf, self.shared)
    }
    /// The inverse of `into_parts`: each shared payload follows `buf[..at]` (positions must
    /// rise and lie within `buf`).
    pub fn from_parts(buf: Vec<u8>, shared: Vec<(usize, bytes::Bytes)>) -> Writer {
        debug_assert!(shared.windows(2).all(|p| p[0].0 <= p[1].0));
        debug_assert!(shared.last().is_none_or(|(at, _)| *at <= buf.len()));
        Writer { buf, shared }
    }
    /// Overwrite a u32 written earlier (for counts known only after the elements).
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        self.buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    /// The whole message as one buffer (shared payloads copied in).
    pub fn into_inner(self) -> Vec<u8> {
        if self.shared.is_empty() {
            return self.buf;
        }
        self.copy_from(0)
    }
    /// The message from byte `start` on as one buffer (shared payloads copied in).
    pub fn copy_from(&self, start: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.total_len().saturating_sub(start));
        let mut skip = start;
        for s in self.segments() {
            let k = skip.min(s.len());
            skip -= k;
            out.extend_from_slice(&s[k..]);
        }
        out
    }
}

/// Default bound for arrays and opaques that carry no explicit `#[xdr(max = N)]`.
/// The remaining-bytes check already bounds memory; this also bounds work.
pub const DEFAULT_MAX: usize = 1 << 20;

pub trait Xdr: Sized {
    fn encode(&self, w: &mut Writer);
    fn decode(r: &mut Reader<'_>) -> Result<Self>;

    /// Smallest wire size of one value; lets array decoding reject impossible counts early.
    const MIN_WIRE: usize = 4;

    fn to_xdr(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.into_inner()
    }
    fn from_xdr(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        Self::decode(&mut r)
    }
}

/// Variable-length types whose decode can be bounded by a field attribute.
pub trait XdrBounded: Sized {
    fn decode_max(r: &mut Reader<'_>, max: usize) -> Result<Self>;
}

impl Xdr for u32 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self)
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.u32()
    }
}
impl Xdr for i32 {
    fn encode(&self, w: &mut Writer) {
        w.u32(*self as u32)
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.u32()? as i32)
    }
}
impl Xdr for u64 {
    fn encode(&self, w: &mut Writer) {
        w.u64(*self)
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        r.u64()
    }
    const MIN_WIRE: usize = 8;
}
impl Xdr for i64 {
    fn encode(&self, w: &mut Writer) {
        w.u64(*self as u64)
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(r.u64()? as i64)
    }
    const MIN_WIRE: usize = 8;
}
impl Xdr for bool {
    fn encode(&self, w: &mut Writer) {
        w.u32(u32::from(*self))
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        match r.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError::BadBool(v)),
        }
    }
}
impl Xdr for () {
    fn encode(&self, _w: &mut Writer) {}
    fn decode(_r: &mut Reader<'_>) -> Result<Self> {
        Ok(())
    }
    const MIN_WIRE: usize = 0;
}

/// Fixed-length opaque, e.g. `verifier4` or `sessionid4`.
impl<const N: usize> Xdr for [u8; N] {
    fn encode(&self, w: &mut Writer) {
        w.fixed_opaque(self)
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let s = r.fixed_opaque(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    const MIN_WIRE: usize = N;
}

impl<T: Xdr> Xdr for Vec<T> {
    fn encode(&self, w: &mut Writer) {
        w.u32(self.len() as u32);
        for x in self {
            x.encode(w);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Self::decode_max(r, DEFAULT_MAX)
    }
}
impl<T: Xdr> XdrBounded for Vec<T> {
    fn decode_max(r: &mut Reader<'_>, max: usize) -> Result<Self> {
        let n = r.count(max, T::MIN_WIRE)?;
        r.enter()?;
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(T::decode(r)?);
        }
        r.leave();
        Ok(v)
    }
}

/// XDR optional-data (`T *`).
impl<T: Xdr> Xdr for Option<T> {
    fn encode(&self, w: &mut Writer) {
        match self {
            Some(x) => {
                w.u32(1);
                x.encode(w);
            }
            None => w.u32(0),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        if bool::decode(r)? {
            r.enter()?;
            let v = T::decode(r)?;
            r.leave();
            Ok(Some(v))
        } else {
            Ok(None)
        }
    }
}

impl<T: Xdr> Xdr for Box<T> {
    fn encode(&self, w: &mut Writer) {
        (**self).encode(w)
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Ok(Box::new(T::decode(r)?))
    }
    const MIN_WIRE: usize = T::MIN_WIRE;
}

/// Variable-length opaque (`opaque x<>`), also used for NFSv4 `utf8str_*` names, whose
/// UTF-8 validity is a protocol decision (NFS4ERR_INVAL), not a decoding one.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Opaque(pub Vec<u8>);

impl std::fmt::Debug for Opaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match std::str::from_utf8(&self.0) {
            Ok(s) if self.0.len() <= 64 => write!(f, "{s:?}"),
            _ => write!(f, "<{} bytes>", self.0.len()),
        }
    }
}
impl From<&str> for Opaque {
    fn from(s: &str) -> Self {
        Opaque(s.as_bytes().to_vec())
    }
}
impl From<Vec<u8>> for Opaque {
    fn from(v: Vec<u8>) -> Self {
        Opaque(v)
    }
}
impl From<&[u8]> for Opaque {
    fn from(v: &[u8]) -> Self {
        Opaque(v.to_vec())
    }
}
impl Opaque {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
impl Xdr for Opaque {
    fn encode(&self, w: &mut Writer) {
        w.opaque(&self.0)
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Self::decode_max(r, DEFAULT_MAX * 16)
    }
}
impl XdrBounded for Opaque {
    fn decode_max(r: &mut Reader<'_>, max: usize) -> Result<Self> {
        let b = r.opaque(max)?;
        // WRITE payloads: a recycled buffer rather than a fresh allocation (see `bufpool`).
        let mut v = crate::bufpool::take(b.len());
        v.extend_from_slice(b);
        Ok(Opaque(v))
    }
}

/// XDR `string<>` that must be UTF-8 (RPC-level names, not NFSv4 components).
impl Xdr for String {
    fn encode(&self, w: &mut Writer) {
        w.opaque(self.as_bytes())
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self> {
        Self::decode_max(r, DEFAULT_MAX)
    }
}
impl XdrBounded for String {
    fn decode_max(r: &mut Reader<'_>, max: usize) -> Result<Self> {
        let b = r.opaque(max)?;
        String::from_utf8(b.to_vec()).map_err(|_| XdrError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_roundtrip_and_padding() {
        let o = Opaque::from("abcde");
        let b = o.to_xdr();
        assert_eq!(b.len(), 4 + 8);
        assert_eq!(Opaque::from_xdr(&b).unwrap(), o);
    }

    #[test]
    fn shared_payloads_are_spliced_in_wire_order() {
        let big = bytes::Bytes::from(vec![7u8; SHARE_MIN + 1]);
        let mut w = Writer::new();
        w.u32(1);
        w.opaque_shared(big.clone());
        w.opaque_shared(bytes::Bytes::from_static(b"small"));
        w.opaque_shared(big.clone());
        w.u32(2);
        let mut flat = Writer::new();
        flat.u32(1);
        flat.opaque(&big);
        flat.opaque(b"small");
        flat.opaque(&big);
        flat.u32(2);
        assert_eq!(w.total_len(), flat.buf.len());
        let pieces: Vec<&[u8]> = w.segments().collect();
        assert_eq!(pieces.len(), 5, "head, payload, middle, payload, tail");
        assert_eq!(pieces.concat(), flat.buf);
        assert_eq!(w.into_inner(), flat.buf);
        // A payload at the very end leaves no empty tail piece.
        let mut w = Writer::new();
        w.opaque_shared(bytes::Bytes::from(vec![1u8; SHARE_MIN]));
        assert_eq!(w.segments().count(), 2);
    }

    #[test]
    fn hostile_counts_are_rejected_without_allocating() {
        // count = 0x7fffffff with 4 bytes left
        let b = [0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 1];
        assert!(Vec::<u32>::from_xdr(&b).is_err());
        assert!(Opaque::from_xdr(&b).is_err());
    }

    #[test]
    fn bounded_vec() {
        let v: Vec<u32> = vec![1, 2, 3];
        let b = v.to_xdr();
        let mut r = Reader::new(&b);
        assert_eq!(
            Vec::<u32>::decode_max(&mut r, 2),
            Err(XdrError::TooLong { len: 3, max: 2 })
        );
    }

    #[test]
    fn deep_optional_chain_is_bounded() {
        // 1000 nested "present" flags must not blow the stack.
        let mut b = Vec::new();
        for _ in 0..1000 {
            b.extend_from_slice(&1u32.to_be_bytes());
        }
        #[derive(Debug)]
        struct Node(Option<Box<Node>>);
        impl Xdr for Node {
            fn encode(&self, w: &mut Writer) {
                self.0.encode(w)
            }
            fn decode(r: &mut Reader<'_>) -> Result<Self> {
                Ok(Node(Option::decode(r)?))
            }
        }
        assert_eq!(Node::from_xdr(&b).unwrap_err(), XdrError::TooDeep);
    }
}
