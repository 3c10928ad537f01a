//! The crate arrows of docs/ARCHITECTURE.md that a machine can check, read from
//! `cargo metadata`: which workspace crate may depend on which.
//!
//! Every kind of dependency counts (normal, build and dev): a test of `mds` that links `ds`
//! couples the two as surely as the library would. Only path dependencies on workspace members
//! count as arrows, so a registry crate that happens to share a member's name is not one.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The packages of the workspace, as `cargo metadata` lists them.
fn packages() -> Vec<serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cfs/ sits in the workspace root");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    meta["packages"].as_array().expect("a package list").clone()
}

/// Workspace crate → the workspace crates it depends on.
fn arrows() -> BTreeMap<String, BTreeSet<String>> {
    let packages = packages();
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("a package name").to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("a dependency list")
                .iter()
                .filter(|d| d["source"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|n| members.contains(*n))
                .map(str::to_string)
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect()
}

/// Every dependency `krate` names, from a registry or not, of every kind.
fn dependency_list(krate: &str) -> BTreeSet<String> {
    let packages = packages();
    let p = packages
        .iter()
        .find(|p| p["name"] == krate)
        .unwrap_or_else(|| panic!("{krate} is no longer a workspace member: update this test"));
    p["dependencies"]
        .as_array()
        .expect("a dependency list")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .map(str::to_string)
        .collect()
}

fn deps<'a>(a: &'a BTreeMap<String, BTreeSet<String>>, krate: &str) -> &'a BTreeSet<String> {
    a.get(krate)
        .unwrap_or_else(|| panic!("{krate} is no longer a workspace member: update this test"))
}

#[test]
fn crate_arrows_follow_the_architecture() {
    let a = arrows();
    for krate in [
        "proto",
        "xdr-derive",
        "mds",
        "meta",
        "meta-core",
        "ds",
        "chunkstore",
        "layout",
        "client",
        "krb",
        "fuse-client",
        "fabric",
        "gateway-v3",
        "metrics",
        "ec",
        "tier",
        "reduce",
        "cfs",
        "conformance",
    ] {
        deps(&a, krate);
    }

    // The MDS and the data servers talk over RPC (NFSv3 and the cluster program), never
    // through each other's code.
    assert!(!deps(&a, "mds").contains("ds"), "mds depends on ds");
    assert!(!deps(&a, "ds").contains("mds"), "ds depends on mds");

    // The object-store client knows objects and keys, not files or shards: the MDS decides
    // what goes to the bucket (`mds/src/tiering/`).
    // (Its own tests name it again, with the `testing` feature on: not an arrow.)
    let tier: Vec<_> = deps(&a, "tier").iter().filter(|d| *d != "tier").collect();
    assert!(tier.is_empty(), "tier depends on {tier:?}");

    // Data reduction is a function of bytes and keys (issue 46): chunk, hash, compress, pack,
    // seal. Where chunks are indexed and segments stored is its callers' business.
    let reduce = deps(&a, "reduce");
    assert!(reduce.is_empty(), "reduce depends on {reduce:?}");

    // The namespace's state machine is a function of its own types: it knows no workspace crate
    // and no runtime, storage engine or Raft (it is unit-tested without them, and every
    // replica runs it alike).
    let core = deps(&a, "meta-core");
    assert!(core.is_empty(), "meta-core depends on {core:?}");
    let runtime: Vec<String> = dependency_list("meta-core")
        .into_iter()
        .filter(|d| ["tokio", "openraft", "redb"].contains(&d.as_str()))
        .collect();
    assert!(runtime.is_empty(), "meta-core depends on {runtime:?}");

    // The replicated namespace knows nothing of NFS: the MDS builds on it, never the reverse;
    // below it only the state machine, wire formats (the peer program), the cluster secret
    // (its MAC) and the metrics registry.
    assert!(!deps(&a, "meta").contains("mds"), "meta depends on mds");
    let meta: Vec<_> = deps(&a, "meta")
        .iter()
        .filter(|d| !["meta-core", "proto", "layout", "metrics"].contains(&d.as_str()))
        .collect();
    assert!(meta.is_empty(), "meta depends on {meta:?}");

    // The binary and the harness are leaves: nothing builds on them.
    for (krate, d) in &a {
        for leaf in ["cfs", "conformance"] {
            assert!(!d.contains(leaf), "{krate} depends on {leaf}");
        }
    }

    // Wire formats know nothing of the system that uses them.
    let proto: Vec<_> = deps(&a, "proto")
        .iter()
        .filter(|d| *d != "xdr-derive")
        .collect();
    assert!(proto.is_empty(), "proto depends on {proto:?}");

    // Layout logic is a function of wire types only.
    let layout: Vec<_> = deps(&a, "layout")
        .iter()
        .filter(|d| *d != "proto")
        .collect();
    assert!(layout.is_empty(), "layout depends on {layout:?}");

    // The chunk store is below both roles that use it and knows neither.
    let chunkstore = deps(&a, "chunkstore");
    assert!(
        chunkstore.is_empty(),
        "chunkstore depends on {chunkstore:?}"
    );

    // The metrics registry is a leaf below the servers: one-line hooks, no coupling.
    let metrics = deps(&a, "metrics");
    assert!(metrics.is_empty(), "metrics depends on {metrics:?}");

    // The client library never links server code (what FUSE and the gateway build on).
    let client: Vec<_> = deps(&a, "client")
        .iter()
        .filter(|d| !["proto", "layout", "krb", "fabric"].contains(&d.as_str()))
        .collect();
    assert!(client.is_empty(), "client depends on {client:?}");

    // The RPCSEC_GSS layer works on wire formats alone: the MDS, the data servers and the
    // client build on it, it builds on none of them.
    let krb: Vec<_> = deps(&a, "krb").iter().filter(|d| *d != "proto").collect();
    assert!(krb.is_empty(), "krb depends on {krb:?}");
    // The NFSv3 gateway is a client of the cluster: wire types, the client library and the
    // RPCSEC_GSS layer it puts in front of its own programs, never server code (it reaches
    // the MDS and the data servers over the network).
    let gateway: Vec<_> = deps(&a, "gateway-v3")
        .iter()
        .filter(|d| !["proto", "client", "krb"].contains(&d.as_str()))
        .collect();
    assert!(gateway.is_empty(), "gateway-v3 depends on {gateway:?}");
    // The FUSE client is a client: the library and the wire types, no server code.
    let fuse: Vec<_> = deps(&a, "fuse-client")
        .iter()
        .filter(|d| !["client", "proto"].contains(&d.as_str()))
        .collect();
    assert!(fuse.is_empty(), "fuse-client depends on {fuse:?}");

    // Erasure coding is arithmetic over bytes: the MDS (records) and the data servers
    // (encode, repair, degraded reads) build on it, it builds on none of ours.
    let ec = deps(&a, "ec");
    assert!(ec.is_empty(), "ec depends on {ec:?}");

    // libfabric's wrapper knows nothing of cfs: both data-path ends use it.
    let fabric = deps(&a, "fabric");
    assert!(fabric.is_empty(), "fabric depends on {fabric:?}");
}

/// The `mds::` paths `cfs`'s sources name: Rust paths and doc comments alike, the metrics
/// registry's `metrics::mds` aside.
fn mds_paths(dir: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).expect("cfs/src reads") {
        let path = e.expect("a directory entry").path();
        if path.is_dir() {
            mds_paths(&path, out);
            continue;
        }
        if path.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a source file reads");
        for (at, _) in text.match_indices("mds::") {
            let before = &text[..at];
            if before.ends_with("metrics::")
                || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            let name: String = text[at + 5..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
}

/// `cfs` wires roles together: of the MDS it uses the server, its configuration and its admin
/// API, never the modules behind them (issue 42), so those stay free to change.
#[test]
fn cfs_uses_only_the_mds_surface() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut used = BTreeSet::new();
    mds_paths(&src, &mut used);
    let inside: Vec<_> = used
        .iter()
        .filter(|n| !["Server", "ServerError", "config", "admin"].contains(&n.as_str()))
        .collect();
    assert!(inside.is_empty(), "cfs/src reaches into mds::{inside:?}");
}
