//! `setup`: install host packages, discover and fetch the two guest kernels, build the initramfs
//! and the static guest helper. Everything lands in the cache; every step is skipped when its
//! output is already there, so a second run only checks.

use crate::error::{Error, IoContext, Result};
use crate::paths;
use crate::procs;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages the harness needs on the host (gcc + libc6-dev build the static helper).
const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "zstd",
    "xz-utils",
    "bc",
    "nfs-ganesha",
    "nfs-ganesha-vfs",
    "rpcbind",
    "iproute2",
    "util-linux",
    "gcc",
    "libc6-dev",
    "ca-certificates",
    // Kerberos: the realm tests and `run --sec` start (krb5kdc, kadmin.local, kinit), the
    // guests' rpc.gssd (copied from nfs-common), and what `krb` builds against (libgssapi's
    // bindings are generated with libclang).
    "krb5-kdc",
    "krb5-admin-server",
    "krb5-user",
    "nfs-common",
    "libkrb5-dev",
    "libclang-dev",
    // The FUSE client's tests mount (fusermount3) and its RMA data path loads libfabric.
    "fuse3",
    "libfabric1",
    // The console's browser test (`cfs/tests/it/console_browser.rs`): headless, over WebDriver.
    "chromium",
    "chromium-driver",
];

/// The guest kernels: which Debian suite each comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KernelKind {
    Bookworm,
    Sid,
}

impl KernelKind {
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Bookworm => "bookworm",
            KernelKind::Sid => "sid",
        }
    }

    fn suites(self, mirror: &str, security: &str) -> String {
        match self {
            // 6.1 point releases ship through bookworm-security first
            KernelKind::Bookworm => format!(
                "deb {mirror} bookworm main\ndeb {mirror} bookworm-updates main\ndeb {security} bookworm-security main\n"
            ),
            KernelKind::Sid => format!("deb {mirror} sid main\n"),
        }
    }
}

pub const ALL_KERNELS: [KernelKind; 2] = [KernelKind::Bookworm, KernelKind::Sid];

/// Discovered kernel versions, remembered so runs need no apt access.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Kernels {
    pub bookworm: Option<String>,
    pub sid: Option<String>,
}

impl Kernels {
    fn path() -> PathBuf {
        paths::cache_dir().join("kernels.json")
    }

    pub fn load() -> Kernels {
        std::fs::read(Self::path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self) -> Result<()> {
        let p = Self::path();
        std::fs::write(&p, serde_json::to_vec_pretty(self)?).ctx(|| format!("write {p:?}"))
    }

    pub fn get(&self, k: KernelKind) -> Option<&str> {
        match k {
            KernelKind::Bookworm => self.bookworm.as_deref(),
            KernelKind::Sid => self.sid.as_deref(),
        }
    }

    fn set(&mut self, k: KernelKind, v: String) {
        match k {
            KernelKind::Bookworm => self.bookworm = Some(v),
            KernelKind::Sid => self.sid = Some(v),
        }
    }
}

/// A kernel is ready when its vmlinux and base initramfs exist.
pub fn kernel_ready(kver: &str) -> bool {
    let k = paths::cache_dir().join("k").join(kver);
    k.join("vmlinux").is_file() && k.join("initramfs.cpio.gz").is_file()
}

pub fn helper_path() -> PathBuf {
    paths::cache_dir().join("bin").join("cfshelper")
}

pub fn setup(kernels: &[KernelKind], refresh: bool) -> Result<Kernels> {
    let cache = paths::cache_dir();
    std::fs::create_dir_all(&cache).ctx(|| format!("create {cache:?}"))?;
    install_packages()?;
    build_helper()?;
    let mut known = Kernels::load();
    for &k in kernels {
        let cached = known.get(k).map(str::to_owned);
        let kver = match cached {
            Some(v) if !refresh && kernel_ready(&v) => {
                println!("kernel {}: {v} (cached)", k.name());
                continue;
            }
            Some(v) if !refresh => v,
            _ => discover_kernel(k)?,
        };
        println!("kernel {}: {kver}", k.name());
        procs::run_visible(
            Command::new(paths::host_script("build-initramfs.sh"))
                .arg(&kver)
                .arg(k.name())
                .env("CFS_CONFORMANCE_CACHE", &cache),
        )?;
        known.set(k, kver);
        known.save()?;
    }
    Ok(known)
}

fn package_installed(p: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", p])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn install_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| !package_installed(p))
        .collect();
    if missing.is_empty() {
        println!("host packages: all present");
        return Ok(());
    }
    println!("host packages missing: {}", missing.join(" "));
    procs::run_visible(Command::new("apt-get").arg("update"))?;
    // Never remove what the host has: a dry run names what installing would remove (a
    // conflict, e.g. qemu-utils against another qemu-img), and the real install runs with
    // --no-remove, so apt stops rather than remove anything.
    let dry = procs::run(
        Command::new("apt-get")
            .args(["install", "-s", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .unwrap_or_default();
    let mut removals = would_remove(&dry);
    let mut target: Option<String> = None;
    // A host image may carry a package from its release's backports (seen: qemu-utils 10.0
    // from bookworm-backports beside bookworm's qemu-system-x86 7.2, which conflicts). Then
    // the same backports suite has the matching versions: take the missing packages from it,
    // which removes nothing.
    if !removals.is_empty() && removals.iter().all(|p| installed_from_backports(p)) {
        if let Some(suite) = enable_backports()? {
            procs::run_visible(Command::new("apt-get").arg("update"))?;
            let dry = procs::run(
                Command::new("apt-get")
                    .args(["install", "-s", "--no-install-recommends", "-t", &suite])
                    .args(&missing)
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )
            .unwrap_or_default();
            removals = would_remove(&dry);
            target = Some(suite);
        }
    }
    if !removals.is_empty() {
        return Err(Error::Setup(format!(
            "installing {} would remove {} (a conflict with what this host has); cfs setup removes              nothing. Resolve it by hand (e.g. `apt-get install {}` and decide about those), then              run setup again",
            missing.join(" "),
            removals.join(" "),
            missing.join(" ")
        )));
    }
    let mut install = Command::new("apt-get");
    install.args(["install", "-y", "--no-remove", "--no-install-recommends"]);
    if let Some(suite) = &target {
        install.args(["-t", suite]);
    }
    procs::run_visible(
        install
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Whether the installed version of package `p` came from a backports suite (`~bpoNN`).
fn installed_from_backports(p: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", p])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("~bpo"))
        .unwrap_or(false)
}

/// Makes the host's release's backports suite known to apt (a sources file of cfs's own, next
/// to the host's, on the host's mirror) and returns its name; `None` when the release is
/// unknown.
fn enable_backports() -> Result<Option<String>> {
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let Some(codename) = release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_owned())
        .filter(|c| !c.is_empty())
    else {
        return Ok(None);
    };
    let suite = format!("{codename}-backports");
    let (mirror, _) = host_mirror();
    let path = Path::new("/etc/apt/sources.list.d/cfs-backports.sources");
    let text = format!(
        "Types: deb\nURIs: {mirror}\nSuites: {suite}\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
        println!("enabling {suite} for packages matching the host's backported ones");
        std::fs::write(path, text).ctx(|| format!("write {path:?}"))?;
    }
    Ok(Some(suite))
}

/// The packages a simulated `apt-get install -s` would remove ("Remv NAME [VERSION]" lines).
fn would_remove(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|l| l.strip_prefix("Remv "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The guest helper's sources, compiled into one static binary.
const HELPER_SOURCES: [&str; 3] = ["cfshelper.c", "posixdiff.c", "statd.c"];

pub fn build_helper() -> Result<()> {
    let guest = paths::source_dir().join("guest");
    let srcs: Vec<PathBuf> = HELPER_SOURCES.iter().map(|s| guest.join(s)).collect();
    let out = helper_path();
    let built = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
    let fresh = built.is_some_and(|o| {
        srcs.iter().all(|s| {
            std::fs::metadata(s)
                .and_then(|m| m.modified())
                .is_ok_and(|s| o >= s)
        })
    });
    if fresh {
        return Ok(());
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).ctx(|| format!("create {dir:?}"))?;
    }
    println!("building guest helper {out:?}");
    procs::run(
        Command::new("gcc")
            .args(["-static", "-O2", "-Wall", "-o"])
            .arg(&out)
            .args(&srcs),
    )?;
    Ok(())
}

/// The Debian mirror the host already uses (so a proxy or local mirror keeps working).
fn host_mirror() -> (String, String) {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let sources = read("/etc/apt/sources.list.d/debian.sources");
    let mirror = sources
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .map(str::trim)
        .find(|u| !u.contains("security"))
        .map(str::to_owned)
        .or_else(|| {
            read("/etc/apt/sources.list")
                .lines()
                .filter_map(|l| l.strip_prefix("deb "))
                .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("http")))
                .find(|u| !u.contains("security"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_owned());
    let security = sources
        .lines()
        .filter_map(|l| l.strip_prefix("URIs:"))
        .map(str::trim)
        .find(|u| u.contains("security"))
        .map(str::to_owned)
        .unwrap_or_else(|| "http://deb.debian.org/debian-security".to_owned());
    (mirror, security)
}

fn apt_opts(dir: &Path) -> Vec<String> {
    vec![
        "-o".into(),
        format!(
            "Dir::Etc::sourcelist={}",
            dir.join("sources.list").display()
        ),
        "-o".into(),
        "Dir::Etc::sourceparts=-".into(),
        "-o".into(),
        format!("Dir::State::Lists={}", dir.join("lists").display()),
        "-o".into(),
        format!("Dir::Cache={}", dir.join("cache").display()),
    ]
}

/// Ask the suite's `linux-image-amd64` metapackage which versioned kernel it currently pulls in,
/// through private apt lists (sid versions move weekly; bookworm ABI bumps remove old ones).
fn discover_kernel(k: KernelKind) -> Result<String> {
    let dir = paths::cache_dir().join(format!("apt-{}", k.name()));
    for sub in ["lists/partial", "cache/archives/partial"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).ctx(|| format!("create {d:?}"))?;
    }
    let (mirror, security) = host_mirror();
    let list = dir.join("sources.list");
    std::fs::write(&list, k.suites(&mirror, &security)).ctx(|| format!("write {list:?}"))?;
    let opts = apt_opts(&dir);
    procs::run_visible(Command::new("apt-get").args(&opts).arg("update"))?;
    let deps = procs::run(
        Command::new("apt-cache")
            .args(&opts)
            .args(["depends", "linux-image-amd64"]),
    )?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: linux-image-"))
        .find(|v| v.ends_with("-amd64") && v.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::Setup(format!(
                "no versioned linux-image-*-amd64 dependency of linux-image-amd64 in {}:\n{deps}",
                k.name()
            ))
        })
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    #[test]
    fn a_simulated_install_names_what_it_would_remove() {
        let sim = "NOTE: This is only a simulation!\nRemv qemu-utils [1:7.2+dfsg-7]\nInst qemu-img (1:7.2)\nConf qemu-img\n";
        assert_eq!(super::would_remove(sim), vec!["qemu-utils".to_string()]);
        assert!(super::would_remove("Inst a (1)\nConf a\n").is_empty());
    }

    /// posixdiff's comparison: what the allowlist lets through and the near misses it must not
    /// (guest/posixdiff_test.c, compiled with the same gcc that builds the guest helper).
    #[test]
    fn posixdiff_comparison_checks() {
        let guest = crate::paths::source_dir().join("guest");
        let out = std::env::temp_dir().join(format!("posixdiff_test-{}", std::process::id()));
        let built = Command::new("gcc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&out)
            .arg(guest.join("posixdiff_test.c"))
            .status()
            .expect("gcc runs");
        assert!(built.success(), "gcc failed on posixdiff_test.c");
        let ran = Command::new(&out).output().expect("the test program runs");
        let _ = std::fs::remove_file(&out);
        assert!(
            ran.status.success(),
            "posixdiff_test failed: {}",
            String::from_utf8_lossy(&ran.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&ran.stdout).trim(),
            "allowance checks ok"
        );
    }
}
