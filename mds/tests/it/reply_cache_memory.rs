//! The reply cache is bounded server-wide (issue 11, item 6): 100 clients that each ask for
//! 64 slots caching 64 KiB, and fill every slot with a ~63 KiB reply they asked to cache,
//! used to add ~390 MiB to the server. Slots are now granted against a server-wide budget
//! at CREATE_SESSION (as knfsd's nfsd4_get_drc_mem does), so what the sessions can cache is
//! bounded before any reply arrives.
use crate::common::*;
use proto::nfs4::*;
use proto::rpc::Connection;
use proto::xdr::Opaque;

const CLIENTS: usize = 100;
const REPLY_DATA: u32 = 63 << 10;

/// The server-wide budget (`mds::state::DRC_BUDGET`) plus the one small slot (at most
/// `DRC_FLOOR_PER_SESSION`, 4 KiB) a session gets when the budget is spent.
const RESERVED_CEILING: u64 = (64 << 20) + CLIENTS as u64 * (4 << 10);

/// Growth of this process (server and clients) allowed while the clients fill their slots:
/// the 64 MiB budget, plus generous room for allocator slack and 100 connections' buffers.
/// Before the bound the same run grew by ~390 MiB.
const RSS_CEILING: u64 = 160 << 20;

fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb << 10
}

async fn client_session(c: &Connection, owner: String) -> (Sessionid4, u32, u32) {
    let r = compound(
        c,
        1,
        vec![NfsArgop4::ExchangeId(ExchangeIdArgs {
            eia_clientowner: ClientOwner4 {
                co_verifier: [9; 8],
                co_ownerid: Opaque(owner.into_bytes()),
            },
            eia_flags: 0,
            eia_state_protect: StateProtect4A::None,
            eia_client_impl_id: vec![],
        })],
    )
    .await;
    let NfsResop4::ExchangeId(ExchangeIdRes::Ok(x)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    let fore = ChannelAttrs4 {
        ca_headerpadsize: 0,
        ca_maxrequestsize: 1 << 20,
        ca_maxresponsesize: 1 << 20,
        ca_maxresponsesize_cached: 64 << 10,
        ca_maxoperations: 16,
        ca_maxrequests: 64,
        ca_rdma_ird: vec![],
    };
    let back = ChannelAttrs4 {
        ca_maxresponsesize_cached: 0,
        ca_maxrequests: 1,
        ..fore.clone()
    };
    let r = compound(
        c,
        1,
        vec![NfsArgop4::CreateSession(CreateSessionArgs {
            csa_clientid: x.eir_clientid,
            csa_sequence: x.eir_sequenceid,
            csa_flags: 0,
            csa_fore_chan_attrs: fore,
            csa_back_chan_attrs: back,
            csa_cb_program: 0x4000_0000,
            csa_sec_parms: vec![CallbackSecParms4::AuthNone],
        })],
    )
    .await;
    let NfsResop4::CreateSession(CreateSessionRes::Ok(s)) = &r.resarray[0] else {
        panic!("{r:?}")
    };
    let f = &s.csr_fore_chan_attrs;
    (
        s.csr_sessionid,
        f.ca_maxrequests,
        f.ca_maxresponsesize_cached,
    )
}

/// Every slot of the session does one READ of `REPLY_DATA` bytes it asks to have cached.
async fn fill_slots(c: Connection, sid: Sessionid4, slots: u32, cached: u32) {
    let mut set = tokio::task::JoinSet::new();
    for slot in 0..slots {
        let c = c.clone();
        set.spawn(async move {
            let r = compound(
                &c,
                1,
                vec![
                    NfsArgop4::Sequence(SequenceArgs {
                        sa_sessionid: sid,
                        sa_sequenceid: 1,
                        sa_slotid: slot,
                        sa_highest_slotid: slots - 1,
                        sa_cachethis: true,
                    }),
                    NfsArgop4::Putrootfh,
                    NfsArgop4::Lookup(LookupArgs {
                        objname: Opaque::from("big"),
                    }),
                    NfsArgop4::Read(ReadArgs {
                        stateid: Stateid4::ANONYMOUS,
                        offset: 0,
                        count: REPLY_DATA,
                    }),
                ],
            )
            .await;
            // Served and cached where the session caches that much; otherwise refused
            // before it ran.
            let want = if cached > REPLY_DATA + 512 {
                0
            } else {
                Nfsstat4::RepTooBigToCache.code()
            };
            assert_eq!(r.status, want, "slot {slot} of a session caching {cached}");
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// Set in the process that runs the measurement alone.
const ALONE: &str = "CFS_REPLY_CACHE_MEMORY_ALONE";

/// The measurement needs a process of its own (other tests' servers in this one would count
/// against its ceiling): this test runs this binary again with only itself, one thread.
#[test]
fn a_hundred_clients_with_full_slot_tables_stay_within_the_reply_cache_budget() {
    const NAME: &str =
        "reply_cache_memory::a_hundred_clients_with_full_slot_tables_stay_within_the_reply_cache_budget";
    if std::env::var_os(ALONE).is_some() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        return rt.block_on(measure());
    }
    let exe = std::env::current_exe().expect("this test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", NAME, "--test-threads", "1", "--nocapture"])
        .env(ALONE, "1")
        .output()
        .expect("run this binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the measurement on its own failed or did not run:\n{stdout}\n{stderr}"
    );
}

async fn measure() {
    let started = std::time::Instant::now();
    // A hundred clients are a hundred hosts; here they share 127.0.0.1, whose default cap (64
    // connections an address) would close the oldest.
    let limits = proto::rpc::ServeLimits {
        max_per_address: 256,
        ..Default::default()
    };
    let (s, _d) = server_with_limits(mds::config::Export::new("/").unwrap(), limits).await;
    let c = connect(&s).await;
    let sid = session(&c).await;
    let r = compound(
        &c,
        1,
        vec![
            seq(sid, 1),
            NfsArgop4::Putrootfh,
            open_create("big", "writer", Fattr4::default()),
            NfsArgop4::Write(WriteArgs {
                stateid: Stateid4::CURRENT,
                offset: 0,
                stable: StableHow4::FileSync4,
                data: Opaque(vec![3; REPLY_DATA as usize]),
            }),
        ],
    )
    .await;
    assert_eq!(r.status, 0, "{r:?}");

    let before = rss();
    let mut conns = Vec::new();
    let mut sessions = Vec::new();
    let mut reserved = 0u64;
    for i in 0..CLIENTS {
        let c = connect(&s).await;
        let (sid, slots, cached) = client_session(&c, format!("drc-client-{i}")).await;
        reserved += u64::from(slots) * u64::from(cached);
        sessions.push((c.clone(), sid, slots, cached));
        conns.push(c);
    }
    let full = sessions.iter().filter(|s| s.2 == 64).count();
    // One client at a time (its slots at once), so the growth measured is what the server
    // keeps, not replies in flight.
    for (c, sid, slots, cached) in sessions {
        fill_slots(c, sid, slots, cached).await;
    }
    let after = rss();
    let grown = after.saturating_sub(before);
    eprintln!(
        "{CLIENTS} clients: {full} with 64 slots, reply cache reserved {} KiB (ceiling {} KiB), \
         RSS {} -> {} MiB (+{} MiB, ceiling {} MiB), {:?}",
        reserved >> 10,
        RESERVED_CEILING >> 10,
        before >> 20,
        after >> 20,
        grown >> 20,
        RSS_CEILING >> 20,
        started.elapsed()
    );
    assert!(reserved <= RESERVED_CEILING, "reserved {reserved}");
    assert!(grown <= RSS_CEILING, "grew by {} MiB", grown >> 20);
    drop(conns);
}
