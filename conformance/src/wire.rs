//! `wire`: what someone reading the network sees of a guest's file I/O. qemu records every frame
//! of the guest's only NIC (`-object filter-dump`, run-guest.sh's PCAP), so one capture holds
//! the client's traffic to the MDS and to every data server. The guest writes and reads back a
//! file made of a marker string new to the case (scenarios/wire.sh); this module counts the
//! marker in each frame, per server port, and judges by the mount's flavor:
//!
//! - krb5p: the marker must appear nowhere (privacy on every path the bytes take);
//! - krb5i: never on a data server's port (data servers speak AUTH_SYS NFSv3, so such callers
//!   get no layouts and their I/O goes through the MDS under integrity, readable but signed);
//! - sys and krb5: it must appear (the capture does see plaintext, so an empty krb5p result
//!   means something), and for cfs-cluster on a data server's port (the pNFS path was taken).
//!
//! Every flavor must show at least the file's size of traffic to the server, so a capture that
//! missed the I/O cannot pass.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The host as the guest sees it (qemu user networking).
const SERVER_IP: [u8; 4] = [10, 0, 2, 2];
/// Lines of the marker file (scenarios/wire.sh writes this many).
const LINES: u64 = 40_000;

pub struct Capture {
    pub marker: String,
    pub pcap: PathBuf,
}

impl Capture {
    /// A marker no other case or run shares, and where its capture goes.
    pub fn new(dir: &Path, run_id: u32) -> Capture {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // RandomState is seeded per process from the OS: two halves, 32 hex digits
        let h = |salt: u32| {
            use std::hash::{BuildHasher, Hasher};
            let mut x = std::collections::hash_map::RandomState::new().build_hasher();
            x.write_u128(t);
            x.write_u32(run_id);
            x.write_u32(salt);
            x.finish()
        };
        let marker = format!("cfswire-{:016x}{:016x}", h(1), h(2));
        let pcap = dir.join(format!("wire-{}-{run_id}.pcap", std::process::id()));
        Capture { marker, pcap }
    }

    /// Bytes of the marker file.
    pub fn file_bytes(&self) -> u64 {
        LINES * (self.marker.len() as u64 + 1)
    }
}

/// Per server port (the 10.0.2.2 side of a TCP segment): payload bytes and marker hits.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Seen {
    pub frames: u64,
    pub tcp_payload: BTreeMap<u16, u64>,
    pub marker_hits: BTreeMap<u16, u64>,
    /// marker hits in frames that are not TCP to or from the server (ARP, DNS, ...)
    pub other_hits: u64,
}

fn count(hay: &[u8], needle: &[u8]) -> u64 {
    if needle.is_empty() || hay.len() < needle.len() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count() as u64
}

/// (server port, TCP payload) of an Ethernet/IPv4/TCP frame to or from the server.
fn tcp_to_server(frame: &[u8]) -> Option<(u16, &[u8])> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 6 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let ip = ip.get(..total.min(ip.len()))?;
    let tcp = ip.get(ihl..)?;
    let sport = u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]);
    let dport = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    let doff = usize::from(tcp.get(12)? >> 4) * 4;
    let payload = tcp.get(doff..)?;
    if ip.get(16..20)? == SERVER_IP {
        Some((dport, payload))
    } else if ip.get(12..16)? == SERVER_IP {
        Some((sport, payload))
    } else {
        None
    }
}

/// Scans a pcap file (either byte order, Ethernet link type) for `marker`. Every frame is
/// searched whole, so a marker outside TCP counts too (`other_hits`).
pub fn scan(pcap: &[u8], marker: &[u8]) -> Result<Seen, String> {
    let head = pcap.get(..24).ok_or("capture shorter than a pcap header")?;
    let le = match head[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err("not a pcap file".into()),
    };
    let u32_at = |b: &[u8], i: usize| -> Option<u32> {
        let w: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        })
    };
    if u32_at(head, 20) != Some(1) {
        return Err("pcap link type is not Ethernet".into());
    }
    let mut seen = Seen::default();
    let mut at = 24;
    while at < pcap.len() {
        let incl = u32_at(pcap, at + 8).ok_or("truncated record header")? as usize;
        let frame = pcap
            .get(at + 16..at + 16 + incl)
            .ok_or("truncated record")?;
        at += 16 + incl;
        seen.frames += 1;
        let hits = count(frame, marker);
        match tcp_to_server(frame) {
            Some((port, payload)) => {
                *seen.tcp_payload.entry(port).or_default() += payload.len() as u64;
                if hits > 0 {
                    *seen.marker_hits.entry(port).or_default() += hits;
                }
            }
            None => seen.other_hits += hits,
        }
    }
    Ok(seen)
}

/// What the case's output gets: (INFO lines, FAIL lines).
pub fn judge(
    seen: &Seen,
    flavor: &str,
    mds_port: u16,
    ds_ports: &[u16],
    file_bytes: u64,
) -> (Vec<String>, Vec<String>) {
    let role = |p: u16| {
        if p == mds_port {
            "MDS".to_string()
        } else if let Some(i) = ds_ports.iter().position(|d| *d == p) {
            format!("ds{}", i + 1)
        } else {
            format!("port {p}")
        }
    };
    let mut info = vec![format!(
        "INFO: wire: {} frames captured (sec={flavor}); marker file {file_bytes} bytes",
        seen.frames
    )];
    for (p, b) in &seen.tcp_payload {
        info.push(format!(
            "INFO: wire: {} ({p}): {b} payload bytes, marker seen {} times",
            role(*p),
            seen.marker_hits.get(p).copied().unwrap_or(0)
        ));
    }
    let mut fail = Vec::new();
    let server_bytes: u64 = seen
        .tcp_payload
        .iter()
        .filter(|(p, _)| **p == mds_port || ds_ports.contains(p))
        .map(|(_, b)| b)
        .sum();
    if server_bytes < file_bytes {
        fail.push(format!(
            "FAIL: wire: the capture holds {server_bytes} bytes to and from the servers, less than the {file_bytes} byte file: it missed the I/O"
        ));
    }
    let total_hits: u64 = seen.marker_hits.values().sum::<u64>() + seen.other_hits;
    let ds_hits: u64 = ds_ports
        .iter()
        .filter_map(|p| seen.marker_hits.get(p))
        .sum();
    match flavor {
        "krb5p" => {
            if total_hits > 0 {
                let on: Vec<String> = seen
                    .marker_hits
                    .iter()
                    .map(|(p, n)| format!("{} {n}x", role(*p)))
                    .collect();
                fail.push(format!(
                    "FAIL: wire: krb5p: the marker crossed the network readable {total_hits} times ({}; outside TCP to the server {}x)",
                    on.join(", "),
                    seen.other_hits
                ));
            } else {
                info.push(
                    "PASS: wire: krb5p: no plaintext of the marker anywhere in the capture".into(),
                );
            }
        }
        "krb5i" => {
            if ds_hits > 0 {
                fail.push(format!(
                    "FAIL: wire: krb5i: the marker went to data servers ({ds_hits}x) over AUTH_SYS"
                ));
            } else {
                info.push("PASS: wire: krb5i: no marker on a data server's link (I/O through the MDS, under integrity)".into());
            }
        }
        _ => {
            if total_hits == 0 {
                fail.push(format!(
                    "FAIL: wire: sec={flavor}: the marker never appears in the capture (the capture sees no plaintext, so it proves nothing)"
                ));
            } else if !ds_ports.is_empty() && ds_hits == 0 {
                fail.push(format!(
                    "FAIL: wire: sec={flavor}: the marker appears only on the MDS link: the data did not take the pNFS path"
                ));
            } else {
                info.push(format!(
                    "PASS: wire: sec={flavor}: the marker is readable in the capture ({total_hits}x, {ds_hits}x on data servers' links)"
                ));
            }
        }
    }
    (info, fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (src ip, dst ip, src port, dst port, payload)
    type Segment<'a> = ([u8; 4], [u8; 4], u16, u16, &'a [u8]);

    /// A little-endian pcap holding the given Ethernet/IPv4/TCP frames.
    fn pcap(frames: &[Segment<'_>]) -> Vec<u8> {
        let mut out = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        out.extend([0u8; 8]);
        out.extend(65535u32.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        for (src, dst, sp, dp, payload) in frames {
            let mut f = vec![0u8; 12];
            f.extend([0x08, 0x00]);
            let total = (20 + 20 + payload.len()) as u16;
            f.extend([0x45, 0]);
            f.extend(total.to_be_bytes());
            f.extend([0, 0, 0, 0, 64, 6, 0, 0]);
            f.extend(src);
            f.extend(dst);
            f.extend(sp.to_be_bytes());
            f.extend(dp.to_be_bytes());
            f.extend([0u8; 8]);
            f.extend([0x50, 0x18, 0, 0, 0, 0, 0, 0]);
            f.extend(*payload);
            out.extend([0u8; 8]);
            out.extend((f.len() as u32).to_le_bytes());
            out.extend((f.len() as u32).to_le_bytes());
            out.extend(f);
        }
        out
    }

    const GUEST: [u8; 4] = [10, 0, 2, 15];

    #[test]
    fn hits_are_counted_per_server_port_both_ways() {
        let p = pcap(&[
            (GUEST, SERVER_IP, 40000, 2049, b"xxMARKxxMARK"),
            (SERVER_IP, GUEST, 2050, 40001, b"MARK"),
            (GUEST, SERVER_IP, 40002, 2051, b"sealed"),
        ]);
        let s = scan(&p, b"MARK").unwrap();
        assert_eq!(s.frames, 3);
        assert_eq!(s.marker_hits.get(&2049), Some(&2));
        assert_eq!(s.marker_hits.get(&2050), Some(&1));
        assert_eq!(s.marker_hits.get(&2051), None);
        assert_eq!(s.tcp_payload.get(&2051), Some(&6));
        assert!(scan(b"garbage that is long enough to be a header", b"M").is_err());
        let mut cut = p.clone();
        cut.truncate(p.len() - 3);
        assert!(scan(&cut, b"MARK").is_err());
    }

    #[test]
    fn each_flavor_is_judged_by_what_it_promises() {
        let mut s = Seen::default();
        s.tcp_payload.insert(2049, 100);
        s.tcp_payload.insert(2050, 100);
        // krb5p with nothing readable passes; sys with nothing readable fails
        assert!(judge(&s, "krb5p", 2049, &[2050], 150).1.is_empty());
        assert_eq!(judge(&s, "sys", 2049, &[2050], 150).1.len(), 1);
        // too little traffic fails whatever the flavor
        assert_eq!(judge(&s, "krb5p", 2049, &[2050], 1000).1.len(), 1);
        s.marker_hits.insert(2049, 5);
        assert_eq!(judge(&s, "krb5p", 2049, &[2050], 150).1.len(), 1);
        assert!(judge(&s, "krb5i", 2049, &[2050], 150).1.is_empty());
        // sys against a cluster: readable, but only on the MDS link = no pNFS
        assert_eq!(judge(&s, "sys", 2049, &[2050], 150).1.len(), 1);
        assert!(judge(&s, "sys", 2049, &[], 100).1.is_empty());
        s.marker_hits.insert(2050, 5);
        assert!(judge(&s, "sys", 2049, &[2050], 150).1.is_empty());
        assert_eq!(judge(&s, "krb5i", 2049, &[2050], 150).1.len(), 1);
    }
}
