use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("command `{cmd}` failed ({status}): {detail}")]
    Command {
        cmd: String,
        status: String,
        detail: String,
    },
    #[error("setup: {0}")]
    Setup(String),
    #[error("server: {0}")]
    Server(String),
    #[error(
        "the cfs binary was not found at {0} (build it with `cargo build -p cfs`, or set CFS_BIN)"
    )]
    NoCfsBinary(PathBuf),
    #[error("invalid argument: {0}")]
    Usage(String),
    #[error("ecbench: {0}")]
    Bench(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attach a description to an io::Error (which alone never says which file or process).
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}
