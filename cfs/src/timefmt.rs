//! Times as people read them: `ls -l`'s "Mar  4 09:15" (or "Mar  4  2024" when older than
//! six months or in the future, as GNU ls), `stat`'s "2025-03-04 09:15:02.123456789 +0100",
//! in the local time zone (TZ applies).

struct Tm {
    year: i32,
    mon: u32,
    mday: u32,
    hour: u32,
    min: u32,
    sec: u32,
    gmtoff: i64,
}

fn local_tm(secs: i64) -> Option<Tm> {
    let t: libc::time_t = secs as libc::time_t;
    // SAFETY: localtime_r reads `t` and writes only into the zeroed `tm` we own; both outlive
    // the call. tzset makes it honour TZ as localtime(3) would.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe {
        tzset();
        !libc::localtime_r(&t, &mut tm).is_null()
    };
    ok.then(|| Tm {
        year: tm.tm_year + 1900,
        mon: tm.tm_mon as u32,
        mday: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        min: tm.tm_min as u32,
        sec: tm.tm_sec as u32,
        gmtoff: tm.tm_gmtoff,
    })
}

extern "C" {
    fn tzset();
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `ls -l`'s time column (12 characters).
pub fn ls(secs: i64) -> String {
    let Some(tm) = local_tm(secs) else {
        return format!("{secs:>12}");
    };
    let six_months = 183 * 24 * 3600;
    let recent = secs <= now() + 60 && now() - secs < six_months;
    let m = MONTHS.get(tm.mon as usize).copied().unwrap_or("???");
    if recent {
        format!("{m} {:>2} {:02}:{:02}", tm.mday, tm.hour, tm.min)
    } else {
        format!("{m} {:>2}  {:>4}", tm.mday, tm.year)
    }
}

/// `stat`'s full time with nanoseconds and the zone offset.
pub fn full(secs: i64, nanos: u32) -> String {
    let Some(tm) = local_tm(secs) else {
        return format!("{secs}.{nanos:09}");
    };
    let off = tm.gmtoff;
    let sign = if off < 0 { '-' } else { '+' };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{nanos:09} {sign}{:02}{:02}",
        tm.year,
        tm.mon + 1,
        tm.mday,
        tm.hour,
        tm.min,
        tm.sec,
        off.abs() / 3600,
        off.abs() % 3600 / 60
    )
}

/// A local date and time to the second.
pub fn local(secs: i64) -> String {
    let f = full(secs, 0);
    match f.split_once('.') {
        Some((a, _)) => a.to_string(),
        None => f,
    }
}

/// "3d 4h", "2h 5m", "5m 2s", "42s".
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_ls_and_stat_print_them() {
        std::env::set_var("TZ", "UTC");
        // 2024-02-29 13:05:09 UTC: old, so ls shows the year.
        assert_eq!(ls(1_709_211_909), "Feb 29  2024");
        assert_eq!(
            full(1_709_211_909, 5),
            "2024-02-29 13:05:09.000000005 +0000"
        );
        let recent = now() - 3600;
        assert!(ls(recent).contains(':'), "{}", ls(recent));
        assert_eq!(duration(90), "1m 30s");
        assert_eq!(duration(90_000), "1d 1h");
    }
}
