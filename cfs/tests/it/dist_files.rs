//! The files in dist/ that a packager installs: systemd accepts the units (as `systemd-analyze
//! verify` sees them with the binary in place), and the commented default config is valid.
use crate::common;
use std::path::Path;
use std::process::Command;

fn dist() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../dist"))
}

#[test]
fn systemd_accepts_the_units() {
    let t = tempfile::tempdir().unwrap();
    for unit in ["cfs-server.service", "cfs@.service"] {
        // Installed, the binary is /usr/local/bin/cfs; here it is the one just built.
        let text = std::fs::read_to_string(dist().join("systemd").join(unit)).unwrap();
        let text = text.replace("/usr/local/bin/cfs", common::BIN);
        let name = if unit == "cfs@.service" {
            "cfs@ds1.service"
        } else {
            unit
        };
        let p = t.path().join(name);
        std::fs::write(&p, text).unwrap();
        let o = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&p)
            .output()
            .expect("systemd-analyze (Debian's systemd package)");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && err.trim().is_empty(), "{unit}: {err}");
    }
}

#[test]
fn the_default_config_is_valid() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data").to_string_lossy().into_owned();
    let cfg = dist().join("cfs.toml").to_string_lossy().into_owned();
    let o = common::cfs(
        t.path(),
        &[
            "server",
            "--config",
            &cfg,
            "--data",
            &data,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--check-config",
        ],
    );
    assert!(o.ok(), "{}", o.stderr);
    assert!(o.text().contains("config OK"), "{}", o.text());
}
