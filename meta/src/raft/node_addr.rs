//! What a node's entry in a shard's membership (openraft's `BasicNode::addr`) says about it:
//! the address its peers reach it at, the client address that moves to a live node when it
//! dies (the MDS's `state::remote::addresses`), if it has one, and its failure domain (`raft::placement`), if it
//! has one.
//!
//! The entry is a string, `PEER[ client=CLIENT][ domain=DOMAIN]`. Carrying these in the
//! membership rather than in every node's config is what lets a node that joined later
//! (`cfs server join`) have them: the membership is replicated, the configs are not. A string
//! rather than another node type keeps the memberships already in logs and snapshots readable.
use std::fmt;
use std::net::SocketAddr;

const CLIENT: &str = "client=";
const DOMAIN: &str = "domain=";
/// Longest failure domain name.
pub const MAX_DOMAIN: usize = 64;

/// A parsed membership entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Where the other MDS nodes (and data servers) reach the node: its NFS port.
    pub peer: SocketAddr,
    /// The address clients mount, which a live node takes over when this one dies.
    pub client: Option<SocketAddr>,
    /// Where it fails together with other nodes (a rack, a zone).
    pub domain: Option<String>,
}

/// Whether `d` can name a failure domain: 1 to `MAX_DOMAIN` letters, digits, `.`, `_`, `-`
/// (so it fits in a membership entry and reads the same in every config).
pub fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= MAX_DOMAIN
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl NodeAddr {
    pub fn new(peer: SocketAddr, client: Option<SocketAddr>) -> NodeAddr {
        NodeAddr {
            peer,
            client,
            domain: None,
        }
    }

    pub fn with_domain(mut self, domain: Option<String>) -> NodeAddr {
        self.domain = domain;
        self
    }

    /// Reads an entry; `None` for one that is not of the form (nothing from it is used).
    pub fn parse(s: &str) -> Option<NodeAddr> {
        let mut words = s.split(' ');
        let mut a = NodeAddr::new(words.next()?.parse().ok()?, None);
        for w in words {
            if let Some(c) = w.strip_prefix(CLIENT) {
                if a.client.is_some() || a.domain.is_some() {
                    return None;
                }
                a.client = Some(c.parse().ok()?);
            } else if let Some(d) = w.strip_prefix(DOMAIN) {
                if a.domain.is_some() || !valid_domain(d) {
                    return None;
                }
                a.domain = Some(d.to_string());
            } else {
                return None;
            }
        }
        Some(a)
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.peer)?;
        if let Some(c) = self.client {
            write!(f, " {CLIENT}{c}")?;
        }
        if let Some(d) = &self.domain {
            write!(f, " {DOMAIN}{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_plain_address_has_no_client_address() {
        let peer: SocketAddr = "127.0.0.1:2052".parse().unwrap();
        let client: SocketAddr = "127.0.0.4:2049".parse().unwrap();
        for a in [
            NodeAddr::new(peer, None),
            NodeAddr::new(peer, Some(client)),
            NodeAddr::new(peer, None).with_domain(Some("rack-1".into())),
            NodeAddr::new(peer, Some(client)).with_domain(Some("zone_b.2".into())),
        ] {
            assert_eq!(NodeAddr::parse(&a.to_string()), Some(a));
        }
        assert_eq!(
            NodeAddr::parse("127.0.0.1:2052 client=127.0.0.4:2049 domain=r1")
                .and_then(|a| a.domain),
            Some("r1".to_string())
        );
        assert_eq!(
            NodeAddr::parse("127.0.0.1:2052"),
            Some(NodeAddr::new(peer, None))
        );
        assert_eq!(
            NodeAddr::parse("[::1]:2052 client=127.0.0.4:2049").map(|a| a.client),
            Some(Some(client))
        );
        for bad in [
            "",
            "127.0.0.1",
            "127.0.0.1:2052 client=",
            "x client=127.0.0.4:2049",
            "127.0.0.1:2052 domain=",
            "127.0.0.1:2052 domain=a b",
            "127.0.0.1:2052 domain=a domain=b",
            "127.0.0.1:2052 domain=a client=127.0.0.4:2049",
            "127.0.0.1:2052  client=127.0.0.4:2049",
            "127.0.0.1:2052 domain=a/b",
        ] {
            assert_eq!(NodeAddr::parse(bad), None, "{bad:?}");
        }
    }
}
