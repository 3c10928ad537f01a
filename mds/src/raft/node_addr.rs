//! What a node's entry in a shard's membership (openraft's `BasicNode::addr`) says about it:
//! the address its peers reach it at, and the client address that moves to a live node when
//! it dies (`crate::addresses`), if it has one.
//!
//! The entry is a string, `PEER` or `PEER client=CLIENT`. Carrying the client address in the
//! membership rather than in every node's config is what lets a node that joined later
//! (`cfs server join`) have one: the membership is replicated, the configs are not. A string
//! rather than another node type keeps the memberships already in logs and snapshots readable.
use std::fmt;
use std::net::SocketAddr;

const CLIENT: &str = " client=";

/// A parsed membership entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAddr {
    /// Where the other MDS nodes (and data servers) reach the node: its NFS port.
    pub peer: SocketAddr,
    /// The address clients mount, which a live node takes over when this one dies.
    pub client: Option<SocketAddr>,
}

impl NodeAddr {
    pub fn new(peer: SocketAddr, client: Option<SocketAddr>) -> NodeAddr {
        NodeAddr { peer, client }
    }

    /// Reads an entry; `None` for one that is neither form (nothing from it is used).
    pub fn parse(s: &str) -> Option<NodeAddr> {
        match s.split_once(CLIENT) {
            Some((peer, client)) => Some(NodeAddr {
                peer: peer.parse().ok()?,
                client: Some(client.parse().ok()?),
            }),
            None => Some(NodeAddr {
                peer: s.parse().ok()?,
                client: None,
            }),
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.client {
            Some(c) => write!(f, "{}{CLIENT}{c}", self.peer),
            None => write!(f, "{}", self.peer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_plain_address_has_no_client_address() {
        let peer: SocketAddr = "127.0.0.1:2052".parse().unwrap();
        let client: SocketAddr = "127.0.0.4:2049".parse().unwrap();
        for a in [NodeAddr::new(peer, None), NodeAddr::new(peer, Some(client))] {
            assert_eq!(NodeAddr::parse(&a.to_string()), Some(a));
        }
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
        ] {
            assert_eq!(NodeAddr::parse(bad), None, "{bad:?}");
        }
    }
}
