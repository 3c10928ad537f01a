//! ec-bench: encode and decode throughput per core of the stripe codec, for 4+2 and 2+1 at
//! several shard units, against reed-solomon-simd's own published figures and against the
//! same library on its published configuration measured here in the same run.
//!
//! `cargo run --release -p ec --bin ec-bench -- [--rounds N] [--millis M]`
//!
//! One thread: the figures are per core. Each measurement repeats the operation for about M
//! milliseconds (default 300) and is taken N times (default 5); the table prints the median
//! and the spread (min..max), because the machine is shared and a single figure would lie.
//!
//! Conventions, so that the ratios compare like with like:
//! - "data GiB/s" counts file bytes (k · unit per stripe): what a data server encodes or a
//!   degraded read delivers per second of one core.
//! - "total GiB/s" counts data + parity ((k + m) · unit per stripe; for decode, including the
//!   lost shards), the convention of reed-solomon-simd's README table.
//! - decode = m data shards lost (the worst case a stripe survives), rebuilt from the others.
use ec::pattern::pattern as fill;
use ec::{Decoder, Encoder, Geometry};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// reed-solomon-simd 3.1.0 README, "Benchmarks": 32 original : 32 recovery shards of 1024
/// bytes, single core AVX2 on an AMD Ryzen 5 3600 (Zen 2, 2019), throughput w.r.t.
/// original + recovery bytes.
const PUBLISHED_ENCODE_32_32: f64 = 10.237; // GiB/s
const PUBLISHED_DECODE_32_32_FULL_LOSS: f64 = 253.60 / 1024.0; // 253.60 MiB/s, 100 % loss

const GIB: f64 = (1u64 << 30) as f64;

struct Args {
    rounds: usize,
    per: Duration,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        rounds: 5,
        per: Duration::from_millis(300),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match a.as_str() {
            "--rounds" => out.rounds = value("--rounds")?.clamp(1, 100) as usize,
            "--millis" => out.per = Duration::from_millis(value("--millis")?.clamp(10, 10_000)),
            "-h" | "--help" => {
                return Err("usage: ec-bench [--rounds N] [--millis M]".into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(out)
}

/// Runs `op` repeatedly for about `per`; returns operations per second.
fn rate(per: Duration, mut op: impl FnMut()) -> f64 {
    // warm-up: page in buffers, let the CPU pick its clock
    op();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < per {
        op();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn show(label: &str, (med, lo, hi): (f64, f64, f64)) -> String {
    let s = format!("{med:6.2} ({lo:5.2}..{hi:5.2})");
    if label.is_empty() {
        s
    } else {
        format!("{label} {s}")
    }
}

/// The library's published configuration, measured here the way its README measures it
/// (add the originals + encode; decode given exactly the minimum shards, all originals lost).
struct Baseline {
    originals: Vec<Vec<u8>>,
    recovery: Vec<Vec<u8>>,
    enc: ReedSolomonEncoder,
    dec: ReedSolomonDecoder,
    total: f64,
}

impl Baseline {
    fn new() -> Self {
        let (k, m, shard) = (32usize, 32usize, 1024usize);
        let originals: Vec<Vec<u8>> = (0..k).map(|i| fill(shard, i as u64 + 1)).collect();
        let mut enc = ReedSolomonEncoder::new(k, m, shard).expect("32:32 is supported");
        for o in &originals {
            enc.add_original_shard(o).expect("sizes match");
        }
        let recovery = enc
            .encode()
            .expect("encodes")
            .recovery_iter()
            .map(<[u8]>::to_vec)
            .collect();
        Self {
            originals,
            recovery,
            enc,
            dec: ReedSolomonDecoder::new(k, m, shard).expect("32:32 is supported"),
            total: ((k + m) * shard) as f64,
        }
    }

    /// Encode GiB/s, README convention (original + recovery bytes).
    fn encode(&mut self, per: Duration) -> f64 {
        let (enc, originals) = (&mut self.enc, &self.originals);
        self.total / GIB
            * rate(per, || {
                for o in originals {
                    enc.add_original_shard(o).expect("sizes match");
                }
                black_box(enc.encode().expect("encodes").recovery(0).map(|r| r[0]));
            })
    }

    /// Decode GiB/s with 100 % original loss, README convention.
    fn decode(&mut self, per: Duration) -> f64 {
        let (dec, recovery) = (&mut self.dec, &self.recovery);
        self.total / GIB
            * rate(per, || {
                for (i, r) in recovery.iter().enumerate() {
                    dec.add_recovery_shard(i, r).expect("sizes match");
                }
                black_box(
                    dec.decode()
                        .expect("decodes")
                        .restored_original(0)
                        .map(|r| r[0]),
                );
            })
    }
}

fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    print_cpu();
    println!(
        "{} rounds of ~{} ms per figure; GiB/s of one core as median (min..max); each round\n\
         measures the baseline right before the configuration, so ×base is a same-moment ratio\n",
        args.rounds,
        args.per.as_millis()
    );
    println!(
        "{:<5} {:>7} | {:<20} {:>6} {:>5} | {:<20} | {:<20} | {:<20} {:>6} {:>5}",
        "k+m",
        "unit",
        "encode: data",
        "total",
        "×base",
        "encode+blake3: data",
        "decode 1 lost: data",
        "decode m lost: data",
        "total",
        "×base"
    );
    let mut baseline = Baseline::new();
    let mut base_enc_all = Vec::new();
    let mut base_dec_all = Vec::new();
    for (k, m) in [(4u32, 2u32), (2, 1)] {
        for unit in [64u64 << 10, 256 << 10, 1 << 20] {
            let g = Geometry::new(k, m, unit).expect("valid preset");
            bench_one(
                &args,
                g,
                &mut baseline,
                &mut base_enc_all,
                &mut base_dec_all,
            );
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (enc, dec) = (med(&mut base_enc_all), med(&mut base_dec_all));
    println!(
        "\nbaseline, reed-solomon-simd 32:32 with 1 KiB shards (its README's configuration), all rounds:"
    );
    println!(
        "  encode total {}   published {PUBLISHED_ENCODE_32_32:.3} GiB/s (Ryzen 5 3600, AVX2, one core)   here/published {:.2}",
        show("", enc),
        enc.0 / PUBLISHED_ENCODE_32_32
    );
    println!(
        "  decode total {}   published {PUBLISHED_DECODE_32_32_FULL_LOSS:.3} GiB/s (100 % loss)                    here/published {:.2}",
        show("", dec),
        dec.0 / PUBLISHED_DECODE_32_32_FULL_LOSS
    );
    println!(
        "  a configuration's figure / published ≈ its ×base × here/published (the published table has no 4+2 or 2+1 row)"
    );
}

fn bench_one(
    args: &Args,
    g: Geometry,
    baseline: &mut Baseline,
    base_enc_all: &mut Vec<f64>,
    base_dec_all: &mut Vec<f64>,
) {
    let k = g.k() as usize;
    let m = g.m() as usize;
    let unit = g.unit() as usize;
    let data_bytes = g.stripe_data() as f64;
    let scale = (g.width() as usize * unit) as f64 / data_bytes;
    let data: Vec<Vec<u8>> = (0..k).map(|i| fill(unit, 100 + i as u64)).collect();
    let mut parity = vec![vec![0u8; unit]; m];
    let mut enc = Encoder::new(g).expect("valid geometry");
    enc.parity_into(&data, &mut parity).expect("encodes");
    let mut shards: Vec<Vec<u8>> = data.iter().chain(parity.iter()).cloned().collect();
    let all_lost: Vec<usize> = (0..m).collect();
    let mut dec = Decoder::new(g).expect("valid geometry");

    let (mut encode, mut encode_x, mut encode_sum) = (Vec::new(), Vec::new(), Vec::new());
    let (mut one, mut many, mut many_x) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        let base = baseline.encode(args.per);
        base_enc_all.push(base);
        let e = data_bytes / GIB
            * rate(args.per, || {
                enc.parity_into(&data, &mut parity).expect("encodes");
                black_box(parity[0][0]);
            });
        encode.push(e);
        encode_x.push(e * scale / base);
        // what the background encoder does per stripe: parity, then the blake3 of every
        // shard for the redundancy record
        encode_sum.push(
            data_bytes / GIB
                * rate(args.per, || {
                    enc.parity_into(&data, &mut parity).expect("encodes");
                    for s in data.iter().chain(parity.iter()) {
                        black_box(ec::shard_sum(s));
                    }
                }),
        );
        // the common degraded read: one data server of the stripe down
        one.push(
            data_bytes / GIB
                * rate(args.per, || {
                    dec.reconstruct_lost(&mut shards, &[0])
                        .expect("one loss rebuilds");
                    black_box(shards[0][0]);
                }),
        );
        let base = baseline.decode(args.per);
        base_dec_all.push(base);
        let d = data_bytes / GIB
            * rate(args.per, || {
                dec.reconstruct_lost(&mut shards, &all_lost)
                    .expect("m losses rebuild");
                black_box(shards[0][0]);
            });
        many.push(d);
        many_x.push(d * scale / base);
    }
    assert_eq!(shards[..k], data[..], "decode rebuilt the data");
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (encode, encode_x, encode_sum) =
        (med(&mut encode), med(&mut encode_x), med(&mut encode_sum));
    let (one, many, many_x) = (med(&mut one), med(&mut many), med(&mut many_x));
    println!(
        "{:<5} {:>5}Ki | {} {:6.2} {:5.2} | {} | {} | {} {:6.2} {:5.2}",
        format!("{k}+{m}"),
        unit >> 10,
        show("", encode),
        encode.0 * scale,
        encode_x.0,
        show("", encode_sum),
        show("", one),
        show("", many),
        many.0 * scale,
        many_x.0,
    );
}

fn print_cpu() {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    #[cfg(target_arch = "x86_64")]
    let simd = format!(
        "avx2={} ssse3={}",
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("ssse3")
    );
    #[cfg(not(target_arch = "x86_64"))]
    let simd = String::from("(not x86_64)");
    println!("cpu: {model}; {simd}; one thread");
}
