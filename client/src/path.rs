//! Paths inside the export, as the helpers take them: "/a/b/c" or "a/b/c".
use crate::error::{Error, Result};

/// The components of `path`; "." components are dropped, ".." is refused (the server has no
/// notion of our path, and LOOKUPP would cross symlinks differently than a shell does).
pub fn split_path(path: &str) -> Result<Vec<&str>> {
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(Error::BadPath(path.to_string())),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Splits into parent components and last name; `None` for the root itself.
pub fn split_parent(path: &str) -> Result<Option<(Vec<&str>, &str)>> {
    let mut c = split_path(path)?;
    Ok(c.pop().map(|last| (c, last)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        assert_eq!(split_path("/a//b/./c/").unwrap(), vec!["a", "b", "c"]);
        assert!(split_path("/").unwrap().is_empty());
        assert!(split_path("/a/../b").is_err());
        assert_eq!(split_parent("/x/y").unwrap(), Some((vec!["x"], "y")));
        assert_eq!(split_parent("/").unwrap(), None);
    }
}
