//! Little-endian field reading for the crate's binary formats (segments, recipes, sealed
//! envelopes). Every read is bounds-checked and returns `Truncated` rather than panicking, so
//! a decoder fed hostile bytes can only fail with a typed error.

/// The input ended before a field it promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("input ends before a field it declares")]
pub struct Truncated;

/// A cursor over a byte slice.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, at: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self.at.checked_add(n).ok_or(Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(Truncated)?;
        self.at = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or(&[])
    }
}

/// Splits `bytes` into (body, trailing 32-byte checksum), or `None` if too short.
pub(crate) fn split_checksum(bytes: &[u8]) -> Option<(&[u8], [u8; 32])> {
    let at = bytes.len().checked_sub(32)?;
    let (body, sum) = bytes.split_at(at);
    let mut a = [0u8; 32];
    a.copy_from_slice(sum);
    Some((body, a))
}

/// Lower-case hex of a short prefix, for `Debug` of ids and keys' tags.
pub(crate) fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}
