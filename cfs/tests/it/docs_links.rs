//! The repository's Markdown as a reader meets it: no link leaves the repository, every
//! relative link names a file that is there (and a heading of it, for `#anchor`), and the long
//! pages start with a table of contents. Cheap: it reads text files.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .canonicalize()
        .expect("repository root")
}

/// Our Markdown files: everything but build outputs, git's, and patched third-party code.
fn markdown(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(name.as_str(), "target" | "vendor" | ".git" | "node_modules") {
                markdown(&p, out);
            }
        } else if name.ends_with(".md") {
            out.push(p);
        }
    }
}

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a page's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fence = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fence = !fence;
        } else if !fence && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// `](target)` link targets, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n + 1, after[..end].to_owned()));
            rest = &after[end..];
        }
    }
    out
}

/// Addresses on this machine or a test guest's view of it are not links out.
fn local_url(url: &str) -> bool {
    let host = url.split("://").nth(1).unwrap_or("");
    [
        "127.",
        "localhost",
        "10.0.2.",
        "[::1]",
        "HOST",
        "ADMIN",
        "$",
        "{",
    ]
    .iter()
    .any(|h| host.starts_with(h))
}

#[test]
fn no_link_leaves_the_repository_and_every_link_resolves() {
    let root = root();
    let mut files = Vec::new();
    markdown(&root, &mut files);
    assert!(files.len() >= 8, "Markdown files found: {files:?}");
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        let rel = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        for (n, line) in text.lines().enumerate() {
            for scheme in ["http://", "https://"] {
                let mut rest = line;
                while let Some(i) = rest.find(scheme) {
                    if !local_url(&rest[i..]) {
                        bad.push(format!("{rel}:{}: a link out: {}", n + 1, &rest[i..]));
                    }
                    rest = &rest[i + scheme.len()..];
                }
            }
        }
        for (n, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue; // reported above when not local
            }
            let (path, frag) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                f.clone()
            } else {
                f.parent().unwrap_or(&root).join(path)
            };
            if !file.exists() {
                bad.push(format!("{rel}:{n}: {target}: no such file"));
                continue;
            }
            if !frag.is_empty() && file.extension().is_some_and(|e| e == "md") {
                let t = std::fs::read_to_string(&file).unwrap_or_default();
                if !anchors(&t).contains(frag) {
                    bad.push(format!("{rel}:{n}: {target}: no such heading"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The front page stays a front page, the architecture a map; the pages behind them open with
/// their contents.
#[test]
fn the_readme_is_short_and_the_docs_start_with_contents() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines (at most 250)");
    // The map a newcomer reads in 15 minutes; the design narratives live in the module docs.
    let map = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("ARCHITECTURE");
    let chars = map.chars().count();
    assert!(
        chars <= 30_000,
        "docs/ARCHITECTURE.md has {chars} characters (at most 30,000)"
    );
    let mut pages = vec![root.join("conformance/README.md")];
    for e in std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "md") {
            pages.push(p);
        }
    }
    let mut missing = Vec::new();
    for p in &pages {
        let text = std::fs::read_to_string(p).expect("read");
        if !text.lines().take(30).any(|l| l == "## Contents") {
            missing.push(p.display().to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "pages without a \"## Contents\" in their first 30 lines: {missing:?}"
    );
}
