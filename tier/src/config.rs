//! Where the store is, who we are to it, and how patient to be.
//!
//! Credentials and region come from the configuration when it names them, else from the usual
//! AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION`/`AWS_DEFAULT_REGION`). No profile files, instance metadata or STS: a storage
//! server is given its keys, it does not go looking for them.

use std::time::Duration;

use crate::error::TierError;

/// The region S3-compatible stores that ignore regions are signed for.
pub const DEFAULT_REGION: &str = "us-east-1";

/// An access key pair (and a session token for temporary credentials).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// How often and how patiently a request is retried (see `retry.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The backoff before the second attempt is drawn from `[0, base_delay]`, then doubles.
    pub base_delay: Duration,
    /// No backoff is drawn from a range above this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts, backoff ranges 100 ms, 200 ms, 400 ms, 800 ms: about 1.5 s of waiting at
    /// most, enough for a throttled S3 prefix to scale, short enough to surface an outage.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// Everything a [`crate::Store`] needs.
#[derive(Clone, Debug)]
pub struct TierConfig {
    /// `http://host:port` or `https://host:port` of any S3-compatible store; buckets are
    /// addressed path-style (`endpoint/bucket/key`), so no wildcard DNS is needed.
    pub endpoint: String,
    pub bucket: String,
    /// `None`: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// `None`: from the environment.
    pub credentials: Option<Credentials>,
    /// Limit on the TCP (and TLS) connect.
    pub connect_timeout: Duration,
    /// Each attempt of a request must finish within `request_timeout` plus its size at
    /// `min_bytes_per_sec`, so a 64 MiB PUT gets longer than a DELETE.
    pub request_timeout: Duration,
    pub min_bytes_per_sec: u64,
    /// Requests in flight at once, per store; more wait their turn.
    pub max_in_flight: usize,
    pub retry: RetryPolicy,
}

impl TierConfig {
    /// Defaults for everything but where the store is.
    pub fn new(endpoint: impl Into<String>, bucket: impl Into<String>) -> Self {
        TierConfig {
            endpoint: endpoint.into(),
            bucket: bucket.into(),
            region: None,
            credentials: None,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            // 64 MiB at 4 MiB/s: 16 s on top of the 10.
            min_bytes_per_sec: 4 << 20,
            // 8 × 64 MiB objects buffered at most.
            max_in_flight: 8,
            retry: RetryPolicy::default(),
        }
    }

    /// The time one attempt moving `bytes` may take.
    pub fn attempt_timeout(&self, bytes: u64) -> Duration {
        let rate = self.min_bytes_per_sec.max(1);
        self.request_timeout + Duration::from_millis(bytes.saturating_mul(1000) / rate)
    }

    /// Checks the values that would make every request fail or hang.
    pub fn validate(&self) -> Result<(), TierError> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(TierError::Config(format!(
                "endpoint {:?} is not an http:// or https:// URL",
                self.endpoint
            )));
        }
        if self.bucket.is_empty() || self.bucket.contains('/') {
            return Err(TierError::Config(format!("bad bucket {:?}", self.bucket)));
        }
        if self.max_in_flight == 0 || self.retry.max_attempts == 0 {
            return Err(TierError::Config(
                "max_in_flight and retry.max_attempts must be at least 1".into(),
            ));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(TierError::Config("timeouts must be above zero".into()));
        }
        Ok(())
    }

    /// The credentials to sign with: the configured ones, else the environment's.
    pub fn resolve_credentials(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Credentials, TierError> {
        if let Some(c) = &self.credentials {
            return Ok(c.clone());
        }
        let nonempty = |k: &str| env(k).filter(|v| !v.is_empty());
        match (
            nonempty("AWS_ACCESS_KEY_ID"),
            nonempty("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
                access_key_id,
                secret_access_key,
                session_token: nonempty("AWS_SESSION_TOKEN"),
            }),
            _ => Err(TierError::Config(
                "no credentials: set them in the configuration or in \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    .into(),
            )),
        }
    }

    /// The region to sign for: the configured one, else the environment's, else the default.
    pub fn resolve_region(&self, env: impl Fn(&str) -> Option<String>) -> String {
        self.region
            .clone()
            .or_else(|| env("AWS_REGION").filter(|v| !v.is_empty()))
            .or_else(|| env("AWS_DEFAULT_REGION").filter(|v| !v.is_empty()))
            .unwrap_or_else(|| DEFAULT_REGION.to_string())
    }
}

/// The process environment, for the `resolve_*` functions.
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn configured_credentials_win_over_the_environment() {
        let mut c = TierConfig::new("http://127.0.0.1:9000", "b");
        let env = env_of(&[
            ("AWS_ACCESS_KEY_ID", "envk"),
            ("AWS_SECRET_ACCESS_KEY", "envs"),
        ]);
        let got = c.resolve_credentials(&env).expect("from env");
        assert_eq!(got.access_key_id, "envk");
        assert_eq!(got.session_token, None);
        c.credentials = Some(Credentials {
            access_key_id: "cfgk".into(),
            secret_access_key: "cfgs".into(),
            session_token: None,
        });
        assert_eq!(
            c.resolve_credentials(&env).expect("cfg").access_key_id,
            "cfgk"
        );
        c.credentials = None;
        assert!(matches!(
            c.resolve_credentials(env_of(&[("AWS_ACCESS_KEY_ID", "k")])),
            Err(TierError::Config(_))
        ));
    }

    #[test]
    fn region_falls_back_in_order() {
        let mut c = TierConfig::new("http://127.0.0.1:9000", "b");
        assert_eq!(c.resolve_region(env_of(&[])), DEFAULT_REGION);
        let env = env_of(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "eu-north-1"),
        ]);
        assert_eq!(c.resolve_region(&env), "eu-north-1");
        assert_eq!(
            c.resolve_region(env_of(&[("AWS_DEFAULT_REGION", "eu-west-1")])),
            "eu-west-1"
        );
        c.region = Some("ap-south-1".into());
        assert_eq!(c.resolve_region(&env), "ap-south-1");
    }

    #[test]
    fn timeouts_grow_with_size_and_bad_values_are_refused() {
        let c = TierConfig::new("http://127.0.0.1:9000", "b");
        assert_eq!(c.attempt_timeout(0), Duration::from_secs(10));
        assert_eq!(c.attempt_timeout(64 << 20), Duration::from_secs(26));
        assert!(c.validate().is_ok());
        assert!(TierConfig::new("127.0.0.1:9000", "b").validate().is_err());
        assert!(TierConfig::new("http://h", "a/b").validate().is_err());
        let mut z = c.clone();
        z.max_in_flight = 0;
        assert!(z.validate().is_err());
    }
}
