//! Keeps the lease alive while the client is idle: a SEQUENCE when nothing was sent for a
//! third of the lease (any request renews it, so a busy client sends none).
use crate::client::{Client, Inner};
use std::sync::Weak;
use std::time::Duration;
use tokio::task::JoinHandle;

pub(crate) fn spawn(weak: Weak<Inner>, lease: Duration) -> JoinHandle<()> {
    let period = (lease / 3).max(Duration::from_millis(500));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period / 4).await;
            // Holding no strong reference while asleep lets the client be dropped.
            let Some(inner) = weak.upgrade() else { return };
            let c = Client { inner, auth: None };
            if c.idle_for() >= period {
                if let Err(e) = c.renew().await {
                    tracing::debug!("lease renewal: {e}");
                }
            }
        }
    })
}
