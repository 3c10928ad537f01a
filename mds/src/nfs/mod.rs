//! The NFSv4.1/4.2 protocol: the TCP front (`server`), COMPOUND processing (`compound`), the
//! per-COMPOUND context below the handlers (`ctx`, `caller`), security flavours (`sec`),
//! metering (`metered`), one handler per operation (`ops/`) and the attributes they encode
//! (`attrs`). It answers with the node's parts (`node::Mds`) and keeps no state of its own.

pub mod attrs;
pub(crate) mod caller;
pub mod compound;
pub mod ctx;
pub(crate) mod metered;
pub mod ops;
pub(crate) mod retry;
pub(crate) mod sec;
pub mod server;
