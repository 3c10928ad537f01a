//! `cfs admin status` signs its request with the cluster secret from the config, and the MDS
//! refuses a request signed with anything else.
use crate::common;
use common::{cfs, Server};

#[test]
fn admin_status_is_signed_with_the_cluster_secret() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    std::fs::write(dir.join("secret"), "the admin status test secret\n").unwrap();
    std::fs::write(dir.join("wrong"), "not the secret of this cluster\n").unwrap();
    let s = Server::start(
        dir,
        Some(&format!(
            "roles = [\"mds\"]\n[cluster]\nsecret_file = \"{}\"\n",
            dir.join("secret").display()
        )),
    );
    let config = dir.join("cfs.toml").to_string_lossy().into_owned();
    let addr = s.server_arg();

    let o = cfs(
        dir,
        &[
            "admin", "status", "--json", "--server", &addr, "--config", &config,
        ],
    );
    assert!(o.ok(), "{}{}", o.text(), o.stderr);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    assert!(v["data_servers"].is_array(), "{v}");

    let wrong = dir.join("wrong").to_string_lossy().into_owned();
    let o = cfs(
        dir,
        &[
            "admin",
            "status",
            "--server",
            &addr,
            "--cluster-secret-file",
            &wrong,
        ],
    );
    assert!(!o.ok(), "{}", o.text());
    assert!(o.stderr.contains("wrong cluster secret"), "{}", o.stderr);

    let o = cfs(dir, &["admin", "status", "--server", &addr]);
    assert!(!o.ok(), "{}", o.text());
    assert!(o.stderr.contains("secret"), "{}", o.stderr);
}
