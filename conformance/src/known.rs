//! Defects of the baseline server that are recorded, not worked around. A failing case becomes
//! "known-fail" only when every FAIL line of it matches one of these signatures for the same
//! server, kernel and version; any other failure in the same case keeps it a plain failure.

use crate::setup::KernelKind;

pub struct KnownIssue {
    pub ganesha: bool,
    pub kernel: KernelKind,
    pub vers: &'static [&'static str],
    /// substrings of a FAIL line (any one matches)
    pub signatures: &'static [&'static str],
    pub reason: &'static str,
}

/// ganesha offers no OPEN4_RESULT_PRESERVE_UNLINKED, so the client silly-renames an unlinked
/// open file (nlink 1, a `.nfsXXXX` name left while it is open): allowed by RFC 8881, but not
/// what a local file system does, which is what the posix scenario checks of cfs.
const NO_PRESERVE_UNLINKED: &[&str] = &[
    "an unlinked open file reports nlink 0",
    "no silly-renamed .nfs file is left",
];
const NO_PRESERVE_UNLINKED_REASON: &str = "nfs-ganesha does not promise to preserve unlinked \
     open files (no OPEN4_RESULT_PRESERVE_UNLINKED), so the kernel silly-renames them";

pub const KNOWN: &[KnownIssue] = &[
    KnownIssue {
        ganesha: true,
        kernel: KernelKind::Sid,
        vers: &["4.1", "4.2"],
        signatures: &["another user's 0755 directory renamed within its parent"],
        reason: "nfs-ganesha answers EACCES when the sid kernel renames another user's \
                 directory within its parent, which Linux allows (vfs_rename wants write \
                 permission on a moved directory only when its parent changes); with the \
                 bookworm kernel it answers OK",
    },
    KnownIssue {
        ganesha: true,
        kernel: KernelKind::Bookworm,
        vers: &["4.1", "4.2"],
        signatures: NO_PRESERVE_UNLINKED,
        reason: NO_PRESERVE_UNLINKED_REASON,
    },
    KnownIssue {
        ganesha: true,
        kernel: KernelKind::Sid,
        vers: &["4.1", "4.2"],
        signatures: NO_PRESERVE_UNLINKED,
        reason: NO_PRESERVE_UNLINKED_REASON,
    },
    KnownIssue {
        ganesha: true,
        kernel: KernelKind::Sid,
        vers: &["4.1", "4.2"],
        // the recursive cleanup fails silently under busybox rm -f, hence its check name
        signatures: &[
            "Remote I/O error",
            "EREMOTEIO",
            "remove the working directory tree",
        ],
        reason: "nfs-ganesha fails the sid kernel's directory delegations: operations on a \
                 directory return EREMOTEIO (not worked around: nfsv4.directory_delegations=0 \
                 is deliberately not set)",
    },
    KnownIssue {
        ganesha: true,
        kernel: KernelKind::Sid,
        vers: &["4.2"],
        // '@' is how the scenarios print NUL bytes; larger reads end in EIO instead, which the
        // bench's dd reports only as its check failing ("sequential read")
        signatures: &[
            "@@",
            "Input/output error",
            "as all zeros",
            "EIO",
            "sequential read",
        ],
        reason: "nfs-ganesha's READ_PLUS answers to the sid kernel read back as zeros (small \
                 files) or fail with EIO (larger reads) with vers=4.2",
    },
];

pub fn classify(
    ganesha: bool,
    kernel: KernelKind,
    vers: &str,
    failures: &[String],
) -> Option<String> {
    if failures.is_empty() {
        return None;
    }
    let applicable: Vec<&KnownIssue> = KNOWN
        .iter()
        .filter(|k| k.ganesha == ganesha && k.kernel == kernel && k.vers.contains(&vers))
        .collect();
    let mut reasons: Vec<&str> = Vec::new();
    for f in failures {
        let hit = applicable
            .iter()
            .find(|k| k.signatures.iter().any(|s| f.contains(s)))?;
        if !reasons.contains(&hit.reason) {
            reasons.push(hit.reason);
        }
    }
    Some(reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fully_explained_failures_are_known() {
        let eremote = vec!["FAIL: remove: rm: can't stat 'x': Remote I/O error".to_owned()];
        assert!(classify(true, KernelKind::Sid, "4.1", &eremote).is_some());
        assert!(classify(true, KernelKind::Bookworm, "4.1", &eremote).is_none());
        assert!(classify(false, KernelKind::Sid, "4.1", &eremote).is_none());
        let mixed = vec![eremote[0].clone(), "FAIL: chmod: expected 640".to_owned()];
        assert!(classify(true, KernelKind::Sid, "4.1", &mixed).is_none());
        // Two known causes in one case, each line explained by one of them.
        let silly = "FAIL: an unlinked open file reports nlink 0: expected '0', got '1'".to_owned();
        let both = vec![eremote[0].clone(), silly.clone()];
        assert!(classify(true, KernelKind::Sid, "4.1", &both).is_some());
        assert!(classify(false, KernelKind::Bookworm, "4.1", &[silly]).is_none());
    }
}
