//! Record marking (RFC 5531 §11): a record is one or more fragments, each behind a 4-byte
//! header whose top bit marks the last fragment.
use super::RpcError;
use bytes::BufMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const RECORD_HEADER_LEN: usize = 4;
const LAST_FRAGMENT: u32 = 0x8000_0000;

/// Reads one whole record. The returned buffer starts with a synthetic single-fragment header
/// (so `onc-rpc`, which parses exactly one framed message, can read it without a copy), followed
/// by the concatenated fragment data. Returns `Ok(None)` on a clean EOF between records.
pub async fn read_record<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, RpcError> {
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        let mut hdr = [0u8; 4];
        match r.read_exact(&mut hdr).await {
            Ok(_) => {}
            Err(e) if first && e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let h = u32::from_be_bytes(hdr);
        let len = (h & !LAST_FRAGMENT) as usize;
        let total = buf.len().saturating_sub(RECORD_HEADER_LEN) + len;
        if total > max {
            return Err(RpcError::RecordTooLarge { len: total, max });
        }
        if first {
            // WRITE records are ~1 MiB: recycled (see `bufpool`), and never zeroed first.
            buf = crate::bufpool::take(RECORD_HEADER_LEN + len);
            buf.extend_from_slice(&[0; RECORD_HEADER_LEN]);
            first = false;
        }
        let end = buf.len() + len;
        buf.reserve(len);
        while buf.len() < end {
            let want = end - buf.len();
            if r.read_buf(&mut (&mut buf).limit(want)).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
        if h & LAST_FRAGMENT != 0 {
            break;
        }
    }
    let body = (buf.len() - RECORD_HEADER_LEN) as u32;
    buf[..4].copy_from_slice(&(body | LAST_FRAGMENT).to_be_bytes());
    Ok(Some(buf))
}

/// Writes `msg` (a record whose first 4 bytes are reserved for the header) as one fragment.
pub async fn write_record<W: AsyncWrite + Unpin>(w: &mut W, msg: &mut [u8]) -> std::io::Result<()> {
    frame(msg);
    w.write_all(msg).await
}

/// `frame` for a message that may carry shared payloads: the length covers them too.
pub(crate) fn frame_writer(w: &mut crate::xdr::Writer) {
    let body = (w.total_len() - RECORD_HEADER_LEN) as u32;
    w.buf[..4].copy_from_slice(&(body | LAST_FRAGMENT).to_be_bytes());
}

/// Fills the reserved header of a record built with 4 leading placeholder bytes.
pub fn frame(msg: &mut [u8]) {
    let body = (msg.len() - RECORD_HEADER_LEN) as u32;
    msg[..4].copy_from_slice(&(body | LAST_FRAGMENT).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn multi_fragment_record_is_reassembled() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&3u32.to_be_bytes());
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&(2u32 | LAST_FRAGMENT).to_be_bytes());
        wire.extend_from_slice(b"de");
        let mut r = &wire[..];
        let rec = read_record(&mut r, 100).await.unwrap().unwrap();
        assert_eq!(&rec[4..], b"abcde");
        assert_eq!(
            u32::from_be_bytes([rec[0], rec[1], rec[2], rec[3]]),
            5 | LAST_FRAGMENT
        );
        assert!(read_record(&mut r, 100).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn oversized_fragments_are_refused_before_reading() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&(0x7fff_ffffu32).to_be_bytes());
        let mut r = &wire[..];
        assert!(matches!(
            read_record(&mut r, 1 << 20).await,
            Err(RpcError::RecordTooLarge { .. })
        ));
        // Many small fragments must not add up past the limit either.
        let mut wire = Vec::new();
        for _ in 0..10 {
            wire.extend_from_slice(&4u32.to_be_bytes());
            wire.extend_from_slice(b"xxxx");
        }
        let mut r = &wire[..];
        assert!(matches!(
            read_record(&mut r, 16).await,
            Err(RpcError::RecordTooLarge { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_record_is_an_error_not_eof() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&(10u32 | LAST_FRAGMENT).to_be_bytes());
        wire.extend_from_slice(b"abc");
        let mut r = &wire[..];
        assert!(read_record(&mut r, 100).await.is_err());
    }
}
