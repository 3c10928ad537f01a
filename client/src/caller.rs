//! The credential of the caller a COMPOUND is sent for. A client serving many users over one
//! session (the FUSE client: every request names the uid, gid and groups of the process that
//! made it) sends each COMPOUND with that user's AUTH_SYS credential, as the kernel client
//! does per RPC; everything else uses the credential of [`crate::ClientConfig::auth`].
use proto::rpc::Auth;
use std::future::Future;

tokio::task_local! {
    static CALLER: Auth;
}

/// Runs `f` with every COMPOUND it sends to the MDS carrying `auth`. Data-server I/O keeps
/// the credentials the layout names (RFC 8435 §5.1), and tasks `f` spawns are not covered.
pub async fn as_caller<F: Future>(auth: Auth, f: F) -> F::Output {
    CALLER.scope(auth, f).await
}

/// The credential for a COMPOUND sent now: the caller's inside [`as_caller`], else `default`.
pub(crate) fn effective(default: &Auth) -> Auth {
    CALLER
        .try_with(|a| a.clone())
        .unwrap_or_else(|_| default.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::rpc::AuthSys;

    #[tokio::test]
    async fn inside_the_scope_the_caller_outside_the_default() {
        let user = Auth::Sys(AuthSys {
            stamp: 0,
            machine: b"h".to_vec(),
            uid: 1001,
            gid: 1001,
            gids: vec![2000],
        });
        let got = as_caller(user.clone(), async { effective(&Auth::None) }).await;
        assert_eq!(got, user);
        assert_eq!(effective(&Auth::None), Auth::None);
    }
}
