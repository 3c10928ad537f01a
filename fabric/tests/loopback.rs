//! Two endpoints on loopback through a real provider: messages both ways, and the RMA the
//! data path uses (the server reads a client's registered buffer and writes into another).
//! Needs libfabric1 (the `tcp` and `sockets` providers run without RDMA hardware).
use fabric::{Endpoint, RemoteBuf};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn encode(name: &[u8], a: RemoteBuf, b: RemoteBuf) -> Vec<u8> {
    let mut m = vec![name.len() as u8];
    m.extend_from_slice(name);
    for r in [a, b] {
        m.extend_from_slice(&r.addr.to_le_bytes());
        m.extend_from_slice(&r.key.to_le_bytes());
        m.extend_from_slice(&r.len.to_le_bytes());
    }
    m
}

fn decode(m: &[u8]) -> (Vec<u8>, RemoteBuf, RemoteBuf) {
    let n = m[0] as usize;
    let name = m[1..1 + n].to_vec();
    let mut at = 1 + n;
    let mut take = || {
        let addr = u64::from_le_bytes(m[at..at + 8].try_into().unwrap());
        let key = u64::from_le_bytes(m[at + 8..at + 16].try_into().unwrap());
        let len = u32::from_le_bytes(m[at + 16..at + 20].try_into().unwrap());
        at += 20;
        RemoteBuf { addr, key, len }
    };
    let a = take();
    let b = take();
    (name, a, b)
}

async fn rma_round_trip(provider: &str) {
    assert!(
        fabric::available(),
        "libfabric.so.1 cannot be loaded: apt-get install libfabric1"
    );
    let saddr = free_addr();
    let (server, mut srx) = Endpoint::open(provider, Some(saddr)).expect("server endpoint");
    assert_eq!(server.socket_addr(), Some(saddr), "bound where asked");
    let (client, mut crx) = Endpoint::open(provider, Some(free_addr())).expect("client endpoint");

    let payload: Vec<u8> = (0..(1u32 << 20))
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let src = client
        .register(payload.clone(), false)
        .expect("register source");
    let dst = client
        .register(vec![0u8; 1 << 20], true)
        .expect("register destination");
    let to_server = client.peer_at(saddr).expect("server peer");
    client
        .send(to_server, encode(client.name(), src.remote(), dst.remote()))
        .await
        .expect("send");

    let msg = tokio::time::timeout(Duration::from_secs(10), srx.recv())
        .await
        .expect("message within 10 s")
        .expect("message");
    let (cname, a, b) = decode(&msg);
    let to_client = server.peer(&cname).expect("client peer");
    let got = server.read(to_client, a).await.expect("RMA read");
    assert!(got == payload, "RMA read returned other bytes");
    let back: Vec<u8> = got.iter().map(|x| x.wrapping_add(1)).collect();
    server
        .write(to_client, back.clone(), b)
        .await
        .expect("RMA write");
    server
        .send(to_client, b"done".to_vec())
        .await
        .expect("reply");

    let reply = tokio::time::timeout(Duration::from_secs(10), crx.recv())
        .await
        .expect("reply within 10 s")
        .expect("reply");
    assert_eq!(reply, b"done");
    assert!(dst.into_inner() == back, "RMA write landed other bytes");

    // A key that was never registered is refused, not served.
    let bogus = RemoteBuf {
        key: a.key ^ 0xdead_beef,
        ..a
    };
    drop(src);
    assert!(
        server.read(to_client, bogus).await.is_err(),
        "a forged key was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_provider_moves_data_with_rma() {
    rma_round_trip("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_provider_moves_data_with_rma() {
    rma_round_trip("sockets").await;
}
