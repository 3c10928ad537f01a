//! `cfs admin rmtree PATH`: an administrator removes a whole directory tree. The name goes at
//! once (`Command::Detach`), the contents are reclaimed in the background by the namespace's
//! reclaimer (`namespace::rmtree`). NFSv4 has no recursive removal, so this is the admin
//! API's: the bearer token is root's authority, and no per-file permission is checked.

use thiserror::Error;

use crate::node::Mds;
use meta::namespace::{FsError, Inode, ROOT_INO};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RmtreeError {
    #[error("{0:?} is not an absolute path without \".\" and \"..\" (give the path inside the file system, e.g. /projects/old)")]
    BadPath(String),
    #[error("refusing to remove / (the whole file system)")]
    Root,
    #[error("refusing to remove {0}: it is the root of an export{1}")]
    Export(String, String),
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0} is not a directory: rmtree removes directory trees (remove a file with `cfs rm` or over NFS)")]
    NotDir(String),
    #[error("{0}: {1}; try again")]
    Namespace(String, FsError),
}

/// What `rmtree` took away: the directory as it is now (nlink 0, its entries still there
/// until the reclaimer has been through them).
pub type Detached = Inode;

/// The components of `path` (absolute, normalised; `.` and `..` refused: an administrator's
/// removal names what it removes).
fn components(path: &str) -> Result<Vec<&str>, RmtreeError> {
    if !path.starts_with('/') {
        return Err(RmtreeError::BadPath(path.to_string()));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Err(RmtreeError::BadPath(path.to_string()));
    }
    Ok(parts)
}

/// An export whose root is the tree `canonical` or lies inside it: removing the tree would
/// take its root away and make its clients' handles stale.
fn export_in_the_way<'a>(
    mut exports: impl Iterator<Item = &'a str>,
    canonical: &str,
) -> Option<RmtreeError> {
    let below = format!("{canonical}/");
    let e = exports.find(|e| *e == canonical || e.starts_with(&below))?;
    let which = if e == canonical {
        String::new()
    } else {
        format!(" ({e} lies inside it)")
    };
    Some(RmtreeError::Export(canonical.to_string(), which))
}

/// Detaches the directory at `path` (inside the file system, as exports' paths are) with its
/// contents. Refuses `/`, an export's root or a directory holding one, a path that does not
/// exist and anything that is not a directory.
pub async fn rmtree(mds: &Mds, path: &str) -> Result<Detached, RmtreeError> {
    let parts = components(path)?;
    let Some((name, dirs)) = parts.split_last() else {
        return Err(RmtreeError::Root);
    };
    let canonical = format!("/{}", parts.join("/"));
    let exports = mds.exports.iter().map(|e| e.path.as_str());
    if let Some(e) = export_in_the_way(exports, &canonical) {
        return Err(e);
    }
    let ns_err = |e: FsError| match e {
        FsError::NotFound | FsError::Stale(_) => RmtreeError::NotFound(canonical.clone()),
        FsError::NotDir => RmtreeError::NotFound(canonical.clone()),
        e => RmtreeError::Namespace(canonical.clone(), e),
    };
    // Resolved on this node's replica, each step waiting out a transaction under way; the
    // command carries what was found, and `apply` refuses if the name changed meanwhile.
    let (parent, child) = {
        let mut cur = ROOT_INO;
        for d in dirs {
            let i = meta::namespace::settle(
                || mds.ns.lookup_settled(cur, d.as_bytes()),
                |e| *e == FsError::Busy,
            )
            .await
            .map_err(ns_err)?;
            if !i.kind.is_dir() {
                return Err(RmtreeError::NotFound(canonical));
            }
            cur = i.ino;
        }
        let c = meta::namespace::settle(
            || mds.ns.lookup_settled(cur, name.as_bytes()),
            |e| *e == FsError::Busy,
        )
        .await
        .map_err(ns_err)?;
        (cur, c)
    };
    if !child.kind.is_dir() {
        return Err(RmtreeError::NotDir(canonical));
    }
    let out = mds
        .ns
        .detach(parent, name.as_bytes(), child.ino)
        .await
        .map_err(|e| match e {
            FsError::NotDir => RmtreeError::NotDir(canonical.clone()),
            e => ns_err(e),
        })?;
    tracing::info!(path = %canonical, ino = child.ino, "tree detached; its contents go in the background");
    Ok(out.inode.unwrap_or(child))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute_and_plain() {
        assert_eq!(components("/a//b/").unwrap(), vec!["a", "b"]);
        assert!(components("/").unwrap().is_empty());
        assert!(matches!(components("a/b"), Err(RmtreeError::BadPath(_))));
        assert!(matches!(
            components("/a/../b"),
            Err(RmtreeError::BadPath(_))
        ));
        assert!(matches!(components("/a/./b"), Err(RmtreeError::BadPath(_))));
    }

    #[test]
    fn an_export_root_and_a_tree_holding_one_are_refused() {
        let exports = ["/", "/projects", "/home/alice"];
        let check = |p: &str| export_in_the_way(exports.iter().copied(), p);
        assert_eq!(
            check("/projects"),
            Some(RmtreeError::Export("/projects".into(), String::new()))
        );
        let e = check("/home").unwrap().to_string();
        assert!(e.contains("/home/alice lies inside it"), "{e}");
        assert_eq!(check("/projects2"), None);
        assert_eq!(check("/projects/old"), None);
        assert_eq!(check("/home/al"), None);
    }
}
