//! Whole-file transfers with several READs or WRITEs in flight: what `cfs put/get` and the
//! load benchmark use. Chunks go out in order and are awaited in order, so the local side is
//! read and written sequentially while the server works on up to `depth` chunks at once.
//! With pNFS each READ/WRITE goes to the data servers of its layout (see `Client::read`).
use crate::client::Client;
use crate::error::{Error, Result};
use crate::io::OpenFile;
use proto::nfs4::*;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::Arc;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy)]
pub struct TransferOptions {
    /// Bytes per READ/WRITE (capped by the server's limits).
    pub chunk: usize,
    /// READs/WRITEs in flight.
    pub depth: usize,
    /// UNSTABLE (then one COMMIT at the end) or FILE_SYNC per WRITE.
    pub stable: StableHow4,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            chunk: 1 << 20,
            depth: 8,
            stable: StableHow4::Unstable4,
        }
    }
}

type WriteTask = JoinHandle<Result<(StableHow4, Vec<Verifier4>)>>;
type ReadTask = JoinHandle<Result<(Vec<u8>, bool)>>;

fn joined<T>(r: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    r.map_err(|e| Error::Protocol(format!("transfer task failed: {e}")))?
}

/// Reads `src` to its end and writes it to the open file from offset 0; then, for UNSTABLE
/// writes, COMMITs and checks that the server kept every write (same verifier). Returns the
/// bytes written. On `Error::VerifierChanged` the caller must write the data again.
pub async fn upload(
    c: &Client,
    f: Arc<OpenFile>,
    src: &mut dyn Read,
    opt: TransferOptions,
) -> Result<u64> {
    let chunk = opt.chunk.clamp(4096, c.max_write() as usize);
    let depth = opt.depth.max(1);
    let mut inflight: VecDeque<WriteTask> = VecDeque::new();
    let mut verfs: Vec<Verifier4> = Vec::new();
    let mut weakest = StableHow4::FileSync4;
    let mut off = 0u64;
    let mut collect = |r: (StableHow4, Vec<Verifier4>)| {
        weakest = weakest.min(r.0);
        for v in r.1 {
            if !verfs.contains(&v) {
                verfs.push(v);
            }
        }
    };
    loop {
        let mut buf = vec![0u8; chunk];
        let mut n = 0;
        while n < chunk {
            let k = src.read(&mut buf[n..])?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            break;
        }
        buf.truncate(n);
        let (c2, f2, at) = (c.clone(), f.clone(), off);
        inflight.push_back(tokio::spawn(async move {
            c2.write_all(&f2, at, &buf, opt.stable).await
        }));
        off += n as u64;
        if inflight.len() >= depth {
            if let Some(h) = inflight.pop_front() {
                collect(joined(h.await)?);
            }
        }
        if n < chunk {
            break;
        }
    }
    while let Some(h) = inflight.pop_front() {
        collect(joined(h.await)?);
    }
    if weakest != StableHow4::FileSync4 {
        // Through the MDS we compare verifiers; with pNFS the layout driver has compared every
        // data server's and written again whatever one of them lost.
        if let Some(v) = c.commit_file(&f).await? {
            if weakest == StableHow4::Unstable4 && verfs.iter().any(|w| *w != v) {
                return Err(Error::VerifierChanged);
            }
        }
    }
    Ok(off)
}

/// Reads the open file from offset 0 to EOF into `dst`. Returns the bytes read.
pub async fn download(
    c: &Client,
    f: Arc<OpenFile>,
    dst: &mut dyn Write,
    opt: TransferOptions,
) -> Result<u64> {
    let chunk = opt.chunk.clamp(4096, c.max_read() as usize) as u64;
    let depth = opt.depth.max(1);
    let size = f.stat.size;
    let mut inflight: VecDeque<ReadTask> = VecDeque::new();
    let mut next = 0u64;
    let mut total = 0u64;
    let mut eof = false;
    loop {
        // Read ahead to the size seen at OPEN; past it, one chunk at a time until EOF (the
        // file may have grown).
        while !eof && inflight.len() < depth && (next < size || inflight.is_empty()) {
            let (c2, f2, at) = (c.clone(), f.clone(), next);
            inflight.push_back(tokio::spawn(async move {
                c2.read_full(&f2, at, chunk as u32).await
            }));
            next += chunk;
        }
        let Some(h) = inflight.pop_front() else { break };
        let (data, at_eof) = joined(h.await)?;
        dst.write_all(&data)?;
        total += data.len() as u64;
        if at_eof || (data.len() as u64) < chunk {
            eof = true;
            // Later chunks lie past the end; they must be empty.
            while let Some(h) = inflight.pop_front() {
                let (rest, _) = joined(h.await)?;
                if !rest.is_empty() {
                    return Err(Error::Protocol("data after EOF".into()));
                }
            }
        }
    }
    dst.flush()?;
    Ok(total)
}
