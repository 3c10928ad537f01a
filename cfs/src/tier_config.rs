//! `[tier]`: the object store behind flash (issue 45; `mds::config::TierSettings`).
//!
//! ```toml
//! [tier]
//! s3 = "http://127.0.0.1:9000/cfs-bucket"   # endpoint and bucket (path-style)
//! prefix = "site-a"                           # the keys this cluster owns; default "cfs"
//! # access_key_id / secret_access_key: else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
//! ```
//!
//! `mode = "cache"` (the default) copies every file to the bucket once it is quiet;
//! `mode = "tiered"` only files unused for `tier_after_seconds` (`mds::config::TierMode`).
//! Per cluster, not per export: an export is a path into the one namespace, and the uploader
//! works from inodes, which know no path (a file may be reached through several exports, or
//! none); a subtree that should stay on flash or go to the bucket takes a pin
//! (`user.cfs.tier`).
use std::time::Duration;

use mds::config::{TierConfig, TierCredentials, TierMode, TierSettings};
use serde::Deserialize;

/// What is wrong with `[tier]` (`ConfigError::Tier` says where).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TierConfigError(pub String);

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct TierFileConfig {
    /// `http(s)://HOST:PORT/BUCKET`: the store's endpoint and the bucket, addressed path-style.
    pub s3: String,
    /// Key prefix this cluster owns in the bucket (default "cfs").
    pub prefix: Option<String>,
    /// Signing region (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1).
    pub region: Option<String>,
    /// Both, or neither (then the AWS environment variables).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// "cache" (the default: every file is copied) or "tiered" (files unused for
    /// `tier_after_seconds`).
    pub mode: Option<String>,
    /// Tiered mode: seconds a file stays unchanged and unused before it is uploaded (default
    /// 86400).
    pub tier_after_seconds: Option<u64>,
    /// Seconds a file stays unchanged before it is uploaded (default 5).
    pub upload_after_seconds: Option<u64>,
    /// Seconds objects that stopped counting wait before they are deleted (default 600).
    pub delete_grace_seconds: Option<u64>,
    /// File bytes per object, MiB (default 64).
    pub object_mib: Option<u64>,
    /// Requests in flight at once (default 8).
    pub max_in_flight: Option<usize>,
    /// Seconds one request may take before its size counts (default 10).
    pub request_timeout_seconds: Option<u64>,
    /// Seconds a connection may take to open (default 3).
    pub connect_timeout_seconds: Option<u64>,
    /// Attempts per request, the first included (default 5).
    pub max_attempts: Option<u32>,
    /// Flash fuller than this percent starts eviction of files whose bytes are in the bucket
    /// (default 80) ...
    pub evict_high_percent: Option<u8>,
    /// ... down to this percent (default 60).
    pub evict_low_percent: Option<u8>,
    /// Flash fuller than this percent is in write-through: a COMMIT or stable WRITE is
    /// acknowledged once its file is in the bucket (default 95; above evict_high_percent).
    pub write_through_percent: Option<u8>,
    /// The flash space eviction manages, MiB, if not the whole file system under the data
    /// (each data server's, or the single node's): the data's own bytes count against it.
    pub flash_capacity_mib: Option<u64>,
}

/// Splits `http(s)://HOST:PORT/BUCKET` into endpoint and bucket.
pub fn split_s3_url(url: &str) -> Result<(String, String), TierConfigError> {
    let bad = || {
        TierConfigError(format!(
            "s3 = {url:?}: expected http://HOST:PORT/BUCKET (or https://)"
        ))
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(bad)?;
    let (host, bucket) = rest.split_once('/').ok_or_else(bad)?;
    let bucket = bucket.trim_end_matches('/');
    if host.is_empty() || bucket.is_empty() || bucket.contains('/') {
        return Err(bad());
    }
    let scheme_len = url.len() - rest.len();
    Ok((format!("{}{host}", &url[..scheme_len]), bucket.to_string()))
}

/// The settings `[tier]` asks for, checked (credentials are resolved when the server starts).
pub fn settings(f: &TierFileConfig) -> Result<TierSettings, TierConfigError> {
    let mode = match f.mode.as_deref() {
        None | Some("cache") => TierMode::Cache,
        Some("tiered") => TierMode::Tiered,
        Some(other) => {
            return Err(TierConfigError(format!(
                "mode = {other:?}: expected \"cache\" or \"tiered\""
            )))
        }
    };
    if mode == TierMode::Cache && f.tier_after_seconds.is_some() {
        return Err(TierConfigError(
            "tier_after_seconds is for mode = \"tiered\" (cache mode uploads every file)".into(),
        ));
    }
    let (endpoint, bucket) = split_s3_url(&f.s3)?;
    let mut store = TierConfig::new(endpoint, bucket);
    store.region = f.region.clone();
    store.credentials = match (&f.access_key_id, &f.secret_access_key) {
        (Some(a), Some(s)) => Some(TierCredentials {
            access_key_id: a.clone(),
            secret_access_key: s.clone(),
            session_token: None,
        }),
        (None, None) => None,
        _ => {
            return Err(TierConfigError(
                "set both access_key_id and secret_access_key, or neither".into(),
            ))
        }
    };
    if let Some(n) = f.max_in_flight {
        store.max_in_flight = n;
    }
    // Bounded so that the deadlines derived from them (`longest_put`) cannot overflow.
    for (what, v, max) in [
        ("request_timeout_seconds", f.request_timeout_seconds, 3600),
        ("connect_timeout_seconds", f.connect_timeout_seconds, 600),
        ("max_attempts", f.max_attempts.map(u64::from), 100),
        ("upload_after_seconds", f.upload_after_seconds, 86_400 * 365),
        ("delete_grace_seconds", f.delete_grace_seconds, 86_400 * 365),
        ("tier_after_seconds", f.tier_after_seconds, 86_400 * 3650),
    ] {
        if let Some(v) = v.filter(|v| *v > max) {
            return Err(TierConfigError(format!("{what} = {v}: at most {max}")));
        }
    }
    if let Some(s) = f.request_timeout_seconds {
        store.request_timeout = Duration::from_secs(s);
    }
    if let Some(s) = f.connect_timeout_seconds {
        store.connect_timeout = Duration::from_secs(s);
    }
    if let Some(n) = f.max_attempts {
        store.retry.max_attempts = n;
    }
    let mut t = TierSettings::new(store);
    t.mode = mode;
    if let Some(s) = f.tier_after_seconds {
        t.tier_after = Duration::from_secs(s);
    }
    if let Some(p) = &f.prefix {
        t.root = p.clone();
    }
    if let Some(s) = f.upload_after_seconds {
        t.upload_after = Duration::from_secs(s);
    }
    if let Some(s) = f.delete_grace_seconds {
        t.delete_grace = Duration::from_secs(s);
    }
    if let Some(m) = f.object_mib {
        t.object_size = m.saturating_mul(1 << 20);
    }
    if let Some(p) = f.evict_high_percent {
        t.evict_high = p;
    }
    if let Some(p) = f.evict_low_percent {
        t.evict_low = p;
    }
    if let Some(p) = f.write_through_percent {
        t.write_through = p;
    }
    t.flash_capacity = f.flash_capacity_mib.map(|m| m.saturating_mul(1 << 20));
    t.validate().map_err(|e| TierConfigError(e.to_string()))?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_endpoint_and_bucket() {
        assert_eq!(
            split_s3_url("http://127.0.0.1:9000/b").unwrap(),
            ("http://127.0.0.1:9000".into(), "b".into())
        );
        assert_eq!(
            split_s3_url("https://s3.example.com/my-bucket/").unwrap(),
            ("https://s3.example.com".into(), "my-bucket".into())
        );
        for bad in [
            "127.0.0.1:9000/b",
            "http://host",
            "http:///b",
            "http://h/a/b",
            "ftp://h/b",
        ] {
            assert!(split_s3_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_settings_are_refused_with_the_reason() {
        let base = TierFileConfig {
            s3: "http://127.0.0.1:9000/b".into(),
            ..Default::default()
        };
        assert!(settings(&base).is_ok());
        let refused = |f: TierFileConfig, what: &str| {
            let e = settings(&f).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        };
        let tiered = settings(&TierFileConfig {
            mode: Some("tiered".into()),
            tier_after_seconds: Some(3),
            ..base.clone()
        })
        .unwrap();
        assert_eq!(tiered.mode, TierMode::Tiered);
        assert_eq!(tiered.tier_after, Duration::from_secs(3));
        let default = settings(&TierFileConfig {
            mode: Some("tiered".into()),
            ..base.clone()
        })
        .unwrap();
        assert_eq!(default.tier_after, Duration::from_secs(86_400));
        assert_eq!(settings(&base).unwrap().mode, TierMode::Cache);
        refused(
            TierFileConfig {
                mode: Some("archive".into()),
                ..base.clone()
            },
            "expected \"cache\" or \"tiered\"",
        );
        refused(
            TierFileConfig {
                tier_after_seconds: Some(3),
                ..base.clone()
            },
            "mode = \"tiered\"",
        );
        refused(
            TierFileConfig {
                mode: Some("tiered".into()),
                tier_after_seconds: Some(u64::MAX),
                ..base.clone()
            },
            "at most",
        );
        refused(
            TierFileConfig {
                access_key_id: Some("a".into()),
                ..base.clone()
            },
            "both",
        );
        refused(
            TierFileConfig {
                delete_grace_seconds: Some(10),
                ..base.clone()
            },
            "longest",
        );
        refused(
            TierFileConfig {
                object_mib: Some(0),
                ..base.clone()
            },
            "between 1 MiB",
        );
        refused(
            TierFileConfig {
                prefix: Some("../x".into()),
                ..base.clone()
            },
            "prefix",
        );
        refused(
            TierFileConfig {
                evict_high_percent: Some(50),
                evict_low_percent: Some(50),
                ..base.clone()
            },
            "evict_low_percent",
        );
        refused(
            TierFileConfig {
                evict_high_percent: Some(100),
                ..base.clone()
            },
            "at most 99",
        );
        // Write-through must start above the high watermark, and below a full flash.
        for p in [80, 100] {
            refused(
                TierFileConfig {
                    write_through_percent: Some(p),
                    ..base.clone()
                },
                "write_through_percent",
            );
        }
        let wt = settings(&TierFileConfig {
            write_through_percent: Some(90),
            ..base.clone()
        })
        .unwrap();
        assert_eq!(
            (wt.write_through, settings(&base).unwrap().write_through),
            (90, 95)
        );
        refused(
            TierFileConfig {
                flash_capacity_mib: Some(0),
                ..base.clone()
            },
            "flash_capacity_mib",
        );
        // Values whose derived deadlines would overflow are refused, not a panic at start.
        refused(
            TierFileConfig {
                request_timeout_seconds: Some(u64::MAX),
                ..base.clone()
            },
            "at most",
        );
        refused(
            TierFileConfig {
                max_attempts: Some(u32::MAX),
                ..base
            },
            "at most",
        );
    }
}
