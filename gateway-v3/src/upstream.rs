//! The gateway's NFSv4.1 client of the MDS: one session for every v3 client, connected on
//! first use (a server that never sees a v3 client adds no client to its MDS), and rebuilt
//! when lost. A rebuilt session has none of the old one's opens, locks or uncommitted data,
//! so the caller drops what hung on it and changes the write verifier.
use client::{Client, ClientConfig};
use proto::nfs3::Nfsstat3;
use proto::nfs4::{NfsArgop4, NfsResop4};
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Upstream {
    cfg: ClientConfig,
    client: tokio::sync::Mutex<Option<Client>>,
    /// Sessions made so far: a caller that saw a failure on session N asks to replace N only.
    generation: AtomicU64,
}

impl Upstream {
    pub fn new(cfg: ClientConfig) -> Upstream {
        Upstream {
            cfg,
            client: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// The session (connecting if there is none) and its generation. JUKEBOX while the MDS
    /// cannot be reached: v3 clients retry.
    pub async fn get(&self) -> Result<(Client, u64), Nfsstat3> {
        let mut g = self.client.lock().await;
        if let Some(c) = g.as_ref() {
            return Ok((c.clone(), self.generation.load(Ordering::SeqCst)));
        }
        let mut cfg = self.cfg.clone();
        // A new instance of the same owner: the MDS drops what the previous one held.
        cfg.verifier = fresh_verifier();
        match Client::connect(cfg).await {
            Ok(c) => {
                let gen = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                tracing::info!(mds = %self.cfg.server, gen, "gateway session to the MDS");
                *g = Some(c.clone());
                Ok((c, gen))
            }
            Err(e) => {
                tracing::warn!(mds = %self.cfg.server, "cannot reach the MDS: {e}");
                Err(Nfsstat3::Jukebox)
            }
        }
    }

    /// After `e` on session `gen`: whether the session is gone (it is then dropped, and the
    /// caller must drop what hung on it).
    pub async fn failed(&self, gen: u64, e: &client::Error) -> bool {
        if !e.needs_recovery() {
            return false;
        }
        let mut g = self.client.lock().await;
        if self.generation.load(Ordering::SeqCst) != gen || g.is_none() {
            return false;
        }
        tracing::warn!("gateway session to the MDS lost ({e}); reconnecting");
        if let Some(c) = g.take() {
            tokio::spawn(async move {
                let _ = c.shutdown().await;
            });
        }
        true
    }

    /// The current session without connecting.
    pub async fn current(&self) -> Option<Client> {
        self.client.lock().await.clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

fn fresh_verifier() -> [u8; 8] {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        .to_be_bytes()
}

/// Sends a COMPOUND; the results, or the failure (kept whole for the caller to map).
pub async fn run(c: &Client, ops: Vec<NfsArgop4>) -> Result<Vec<NfsResop4>, client::Error> {
    c.compound(ops).await
}
