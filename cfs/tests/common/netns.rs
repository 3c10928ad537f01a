//! Network namespaces for fault tests: one per node, all on a bridge in a namespace of the
//! test's own, and the test process (root namespace) on the same bridge through a veth of its
//! own, so it reaches every node while the nodes can be cut off from each other.
//!
//! A cut is symmetric and silent: blackhole routes to the peers in the cut node's namespace
//! and to the cut node in each peer's, so packets between them are dropped while both keep
//! answering the test process (a client of the minority still reaches it). Needs only
//! iproute2 (`ip`), and root. Everything is deleted on drop, even when the test fails.
#![allow(dead_code)]
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

pub struct Netns {
    /// Namespace names, one per node.
    names: Vec<String>,
    hub: String,
    /// The test process's end of its link to the bridge.
    root_if: String,
    subnet: [u8; 3],
}

/// Runs `ip ARGS`, panicking with its error output when it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip ARGS`, ignoring failure (teardown of what may not exist).
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Netns {
    /// `n` node namespaces named `TAG-1`..`TAG-n` at 10.X.Y.1..n (X.Y from the PID, so
    /// concurrent test processes do not collide), the test process at 10.X.Y.254.
    pub fn new(tag: &str, n: usize) -> Netns {
        assert!(n < 250, "at most 249 nodes on one /24");
        let pid = std::process::id();
        let subnet = [10, 200 + (pid % 50) as u8, ((pid / 50) % 250) as u8];
        let net = Netns {
            names: (1..=n).map(|i| format!("{tag}-{i}")).collect(),
            hub: format!("{tag}-hub"),
            // Interface names are at most 15 bytes.
            root_if: format!("cf{}", pid % 10_000_000),
            subnet,
        };
        // Whatever a killed earlier run with the same names left.
        net.teardown();
        let hub = net.hub.as_str();
        ip(&["netns", "add", hub]);
        ip(&["-n", hub, "link", "set", "lo", "up"]);
        ip(&["-n", hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", hub, "link", "set", "br0", "up"]);
        let root_if = net.root_if.as_str();
        ip(&[
            "link", "add", root_if, "type", "veth", "peer", "name", "up0", "netns", hub,
        ]);
        ip(&["-n", hub, "link", "set", "up0", "master", "br0", "up"]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.root_addr()),
            "dev",
            root_if,
        ]);
        ip(&["link", "set", root_if, "up"]);
        for (i, ns) in net.names.iter().enumerate() {
            let port = format!("v{}", i + 1);
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                hub,
            ]);
            ip(&["-n", hub, "link", "set", &port, "master", "br0", "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", net.addr(i)),
                "dev",
                "eth0",
            ]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Node `i`'s (0-based) namespace.
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// Node `i`'s (0-based) address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, u8::try_from(i + 1).expect("fewer than 250 nodes"))
    }

    /// The test process's address on the bridge.
    pub fn root_addr(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 254)
    }

    /// A command that runs `program` inside node `i`'s namespace (`ip netns exec` execs it, so
    /// the child's PID is the program's).
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.names[i], program]);
        c
    }

    /// Cuts node `i` off from every node in `peers`, both ways; the test process still reaches
    /// all of them.
    pub fn cut(&self, i: usize, peers: &[usize]) {
        for &p in peers {
            let (to_p, to_i) = (
                format!("{}/32", self.addr(p)),
                format!("{}/32", self.addr(i)),
            );
            ip(&["-n", &self.names[i], "route", "add", "blackhole", &to_p]);
            ip(&["-n", &self.names[p], "route", "add", "blackhole", &to_i]);
        }
    }

    /// Undoes `cut(i, peers)`.
    pub fn heal(&self, i: usize, peers: &[usize]) {
        for &p in peers {
            let (to_p, to_i) = (
                format!("{}/32", self.addr(p)),
                format!("{}/32", self.addr(i)),
            );
            ip(&["-n", &self.names[i], "route", "del", "blackhole", &to_p]);
            ip(&["-n", &self.names[p], "route", "del", "blackhole", &to_i]);
        }
    }

    fn teardown(&self) {
        // Deleting a namespace deletes its interfaces and their veth peers (the root end too).
        for ns in &self.names {
            ip_quiet(&["netns", "del", ns]);
        }
        ip_quiet(&["netns", "del", &self.hub]);
        ip_quiet(&["link", "del", &self.root_if]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.teardown();
    }
}
