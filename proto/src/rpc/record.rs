//! Record marking (RFC 5531 §11): a record is one or more fragments, each behind a 4-byte
//! header whose top bit marks the last fragment.
use super::limits::{RecordBudget, SMALL_RECORD};
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
    read_record_within(r, max, None).await
}

/// `read_record`, taking room for records larger than `SMALL_RECORD` from `budget` before
/// allocating it. The room is given back when the record is whole: the budget bounds what
/// peers can make us hold by starting records and not finishing them.
pub(crate) async fn read_record_within<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    budget: Option<&RecordBudget>,
) -> Result<Option<Vec<u8>>, RpcError> {
    let mut buf = Vec::new();
    let mut first = true;
    let mut held = Vec::new();
    let mut charged = 0usize;
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
        if let Some(b) = budget.filter(|_| total > SMALL_RECORD) {
            held.push(b.take(total - charged).await.ok_or(RpcError::Closed)?);
            charged = total;
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
    drop(held);
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

    #[tokio::test]
    async fn large_records_wait_for_budget_and_give_it_back() {
        let budget = RecordBudget::new(64 << 10);
        let mut wire = Vec::new();
        wire.extend_from_slice(&((40u32 << 10) | LAST_FRAGMENT).to_be_bytes());
        wire.extend_from_slice(&[7; 40 << 10]);
        // Someone else holds most of the budget: the record waits.
        let other = budget.take(30 << 10).await.unwrap();
        let mut r = &wire[..];
        let read = read_record_within(&mut r, 1 << 20, Some(&budget));
        tokio::pin!(read);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), &mut read)
                .await
                .is_err()
        );
        drop(other);
        let rec = read.await.unwrap().unwrap();
        assert_eq!(rec.len(), 4 + (40 << 10));
        assert_eq!(budget.in_use(), 0);
        // Small records need none.
        let _all = budget.take(64 << 10).await.unwrap();
        let mut wire = Vec::new();
        wire.extend_from_slice(&(3u32 | LAST_FRAGMENT).to_be_bytes());
        wire.extend_from_slice(b"abc");
        let mut r = &wire[..];
        assert!(read_record_within(&mut r, 100, Some(&budget))
            .await
            .unwrap()
            .is_some());
    }
}
