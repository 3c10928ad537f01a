//! Pinned encodings: the tests that hold what is on disk or between nodes to the bytes an
//! earlier build wrote (`namespace::tests::encodings`, `raft::encodings`, `peer_bodies`).

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compares every `(name, value's bytes)` with `golden`, and on a difference prints the whole
/// table as it is now, so a deliberate addition can be pasted in.
pub fn check(now: &[(&str, Vec<u8>)], golden: &[(&str, &str)]) {
    let now: Vec<(String, String)> = now.iter().map(|(n, b)| (n.to_string(), hex(b))).collect();
    let golden: Vec<(String, String)> = golden
        .iter()
        .map(|(n, h)| (n.to_string(), h.to_string()))
        .collect();
    if now != golden {
        let mut table = String::new();
        for (n, h) in &now {
            table.push_str(&format!("    (\"{n}\", \"{h}\"),\n"));
        }
        for ((n, h), (gn, gh)) in now.iter().zip(&golden) {
            if n != gn || h != gh {
                eprintln!("first difference: {n} = {h}, pinned {gn} = {gh}");
                break;
            }
        }
        panic!(
            "encodings changed ({} now, {} pinned); now:\n{table}",
            now.len(),
            golden.len()
        );
    }
}
