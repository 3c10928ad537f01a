//! ONC RPC over TCP from arbitrary bytes: record marking (any fragmentation, bounded size)
//! and call/reply parsing never panic, and a parsed call's arguments lie inside its record.
#![no_main]
use libfuzzer_sys::fuzz_target;
use proto::rpc::{parse_message, read_record, Incoming};
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let mut r = data;
        // A server keeps reading records until EOF or the first framing error.
        for _ in 0..64 {
            match read_record(&mut r, 64 << 10).await {
                Ok(Some(rec)) => {
                    let len = rec.len();
                    match parse_message(rec) {
                        Ok(Incoming::Call(c)) => assert!(c.args().len() <= len),
                        Ok(Incoming::Reply(rep)) => assert!(rep.body().len() <= len),
                        Ok(Incoming::Garbage { .. }) | Err(_) => {}
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    });
});
