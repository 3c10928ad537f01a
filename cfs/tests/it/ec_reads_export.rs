//! The per-export `ec_reads` setting (issue 13, docs/EC.md "Reads"): which READ layout an
//! erasure-coded file gets. On real processes: `cfs cluster up` with three data servers (2+1)
//! and `--encode-after 1`, one encoded file in each of three exports (`auto`, the default;
//! `striped`; `assembled`). A client whose EXCHANGE_ID implementation id says Linux 6.18 and
//! one that says something else each ask for a READ layout of every file: `auto` stripes for
//! the first only, `striped` for both, `assembled` for neither.
use crate::common;

use client::{CreateMode, SetAttrs};
use common::cluster::Cluster;
use common::ec::wait_for;
use common::{random_bytes, SERIAL};
use proto::nfs4::*;

const LINUX_6_18: &str = "Linux 6.18.3+deb14-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.18.3-1 x86_64";

/// A client of the cluster that says it is `implementation` (domain, name) in EXCHANGE_ID.
fn client_as(cl: &Cluster, implementation: (&str, &str)) -> client::Client {
    let mut cfg = client::ClientConfig::new(cl.addr);
    cfg.pnfs = false;
    cfg.implementation = (implementation.0.into(), implementation.1.into());
    cl.rt
        .block_on(client::Client::connect(cfg))
        .expect("connect")
}

/// (data servers per mirror, mirrors, stripe unit) of `path`'s READ layout for `c`.
fn read_layout(cl: &Cluster, c: &client::Client, path: &str) -> (Vec<usize>, u64) {
    let f = cl
        .rt
        .block_on(c.open_path(path, OPEN4_SHARE_ACCESS_READ, None))
        .expect("open for reading");
    let ff = common::cluster::layoutget(cl, c, &f, Layoutiomode4::Read).1;
    for m in &ff.ffl_mirrors {
        for ds in &m.ffm_data_servers {
            assert!(
                layout::is_shard_handle(ds.ffds_fh_vers[0].0.as_bytes()),
                "{path}: an encoded file's layout names shards"
            );
        }
    }
    cl.rt.block_on(c.close(&f)).expect("close");
    (
        ff.ffl_mirrors
            .iter()
            .map(|m| m.ffm_data_servers.len())
            .collect(),
        ff.ffl_stripe_unit,
    )
}

#[test]
fn ec_reads_per_export_chooses_striped_or_assembled_layouts() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let t = tempfile::tempdir().expect("tempdir");
    let cl = Cluster::start_sized(t.path(), 3, &["--encode-after", "1"]);
    // The exports' directories and files first, while "/" is exported (an export must exist
    // when the MDS starts); then the MDS restarts with the three exports only.
    let exports = ["auto", "striped", "assembled"];
    let data = random_bytes(5 * (1 << 20) + 12345, 0xec16);
    let c = cl.client(false);
    let mut inos = Vec::new();
    for e in exports {
        let root = cl.rt.block_on(c.lookup_path("/")).expect("root");
        cl.rt.block_on(c.mkdir(&root, e, 0o755)).expect("mkdir");
        let f = cl
            .rt
            .block_on(c.open_path(
                &format!("/{e}/f"),
                OPEN4_SHARE_ACCESS_BOTH,
                Some(CreateMode::Unchecked(SetAttrs {
                    mode: Some(0o644),
                    size: Some(0),
                    ..Default::default()
                })),
            ))
            .expect("create");
        cl.rt
            .block_on(c.write_all(&f, 0, &data, StableHow4::FileSync4))
            .expect("write");
        inos.push(cl.rt.block_on(c.getattr(&f.fh)).expect("getattr").fileid);
        cl.rt.block_on(c.close(&f)).expect("close");
    }
    let _ = cl.rt.block_on(c.shutdown());
    wait_for(90, "three files encoded, mirror copies gone", || {
        common::ec::shard_counts(&cl, 3) == vec![3, 3, 3]
            && inos
                .iter()
                .all(|i| cl.chunk_files(*i).iter().all(|(_, n)| *n == 0))
    });

    cl.kill9("mds");
    let mut toml = std::fs::read_to_string(cl.mds_toml()).expect("mds.toml");
    for e in exports {
        let setting = if e == "auto" {
            String::new() // the default
        } else {
            format!("ec_reads = \"{e}\"\n")
        };
        toml.push_str(&format!("\n[[export]]\npath = \"/{e}\"\n{setting}"));
    }
    std::fs::write(cl.mds_toml(), toml).expect("write mds.toml");
    let _mds = cl.restart_mds();
    wait_for(60, "the data servers back in the MDS's table", || {
        cl.status().is_some_and(|st| cl.up(&st) == 3)
    });

    let linux = client_as(&cl, ("kernel.org", LINUX_6_18));
    let other = client_as(&cl, ("claudefs", "cfs client"));
    let striped = (vec![2, 2], 1 << 20);
    let assembled = (vec![1, 1], 0);
    for (who, c) in [("Linux 6.18", &linux), ("another client", &other)] {
        for e in exports {
            let want = match (e, who) {
                ("auto", "Linux 6.18") | ("striped", _) => &striped,
                _ => &assembled,
            };
            assert_eq!(
                &read_layout(&cl, c, &format!("/{e}/f")),
                want,
                "export /{e}, {who}: (data servers per mirror, stripe unit)"
            );
        }
    }
    for c in [linux, other] {
        let _ = cl.rt.block_on(c.shutdown());
    }
}
