//! The S3 client: PUT, GET (whole or a byte range) and DELETE, nothing else.
//!
//! Each call waits for one of `max_in_flight` permits (a semaphore), so a burst of uploads
//! cannot open a connection per segment or buffer more than the bound; then each attempt gets
//! its own deadline (`TierConfig::attempt_timeout`), and an attempt that failed for a reason
//! that may pass (no answer in time, 5xx, `SlowDown`/429, a broken connection) is tried again
//! after a backoff drawn with full jitter (`retry.rs`), up to `retry.max_attempts` in all. A
//! 4xx other than throttling is an answer, not an accident: it is returned at once. The SDK's
//! own retries and timeouts are off, so these are the only ones and the counts are ours.
//!
//! The permit is held for one attempt, not across the backoff, so a request sleeping out a
//! 503 does not keep the others waiting.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::config::{process_env, TierConfig};
use crate::connector::RingClient;
use crate::error::TierError;
use crate::keys::ObjectId;
use crate::object::{self, FormatError, Header, MAX_HEADER_LEN};
use crate::seal::SealKey;

/// A bucket on an S3-compatible store.
#[derive(Clone, Debug)]
pub struct Store {
    sdk: aws_sdk_s3::Client,
    limit: Arc<Semaphore>,
    config: Arc<TierConfig>,
}

impl Store {
    /// A store with credentials and region from `config`, else the process environment.
    pub fn new(config: TierConfig) -> Result<Store, TierError> {
        Store::with_env(config, process_env)
    }

    /// As [`Store::new`], with `env` standing for the environment.
    pub fn with_env(
        config: TierConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Store, TierError> {
        config.validate()?;
        let creds = config.resolve_credentials(&env)?;
        let region = config.resolve_region(&env);
        let http = RingClient::new(config.connect_timeout, config.max_in_flight)?;
        let sdk_config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&config.endpoint)
            .force_path_style(true)
            .region(Region::new(region))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                creds.access_key_id,
                creds.secret_access_key,
                creds.session_token,
                None,
                "cfs-tier",
            ))
            .http_client(http.shared())
            .retry_config(RetryConfig::disabled())
            .timeout_config(TimeoutConfig::disabled())
            // Our objects carry their own blake3; a CRC of 64 MiB per request on top buys
            // nothing and some stores reject the trailing-checksum encoding it brings.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(Store {
            sdk: aws_sdk_s3::Client::from_conf(sdk_config),
            limit: Arc::new(Semaphore::new(config.max_in_flight)),
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &TierConfig {
        &self.config
    }

    /// The SDK client underneath, with no bound, retry or timeout: for benchmarks and tools.
    pub fn sdk(&self) -> &aws_sdk_s3::Client {
        &self.sdk
    }

    /// Stores `body` under `key`, replacing what was there.
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), TierError> {
        let deadline = self.config.attempt_timeout(body.len() as u64);
        self.retrying("PUT", key, deadline, || async {
            self.sdk
                .put_object()
                .bucket(&self.config.bucket)
                .key(key)
                .content_length(body.len() as i64)
                .body(ByteStream::from(body.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("PUT", key, e))
        })
        .await
    }

    /// The whole object under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes, TierError> {
        self.get_inner(key, None).await
    }

    /// Bytes `range` of the object under `key`: fewer if the object ends inside the range.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, TierError> {
        if range.is_empty() {
            return Ok(Bytes::new());
        }
        let got = self.get_inner(key, Some(range.clone())).await?;
        let asked = range.end - range.start;
        if got.len() as u64 > asked {
            return Err(TierError::BadLength {
                key: key.to_string(),
                asked,
                got: got.len() as u64,
            });
        }
        Ok(got)
    }

    /// The verified header of the object under `key`, which must be `id` and hold a payload
    /// whose sum is `sum` (what the metadata recorded): one GET of its first 4 KiB. With
    /// the header's length, where the payload starts. A sealed object verifies only under
    /// its key, `seal` (see `object.rs` on which key reads what).
    pub async fn header(
        &self,
        key: &str,
        id: &ObjectId,
        sum: &[u8; 32],
        seal: Option<&SealKey>,
    ) -> Result<(Header, usize), TierError> {
        let got = self.get_range(key, 0..MAX_HEADER_LEN as u64).await?;
        let (h, len) = object::decode_header(&got, seal)?;
        if h.id != *id {
            return Err(FormatError::NotThisObject {
                expected: *id,
                found: h.id,
            }
            .into());
        }
        if h.payload_blake3 != *sum {
            return Err(FormatError::PayloadChecksum.into());
        }
        Ok((h, len))
    }

    /// Payload bytes `[start, end)` of the object under `key` whose header `header()` read
    /// (`len` its length), as plaintext: a ranged GET of the blocks they fall in, each checked
    /// against its sum, then (a sealed object, `seal` its key) just `[start, end)`
    /// deciphered. A version 1 object (no block sums) is read whole and checked whole.
    pub async fn read_payload(
        &self,
        key: &str,
        h: &Header,
        len: usize,
        start: u64,
        end: u64,
        seal: Option<&SealKey>,
    ) -> Result<Bytes, TierError> {
        let end = end.min(h.payload_len);
        if start >= end {
            return Ok(Bytes::new());
        }
        let Some(blocks) = h.blocks_for(start, end) else {
            let o = object::decode(self.get(key).await?, seal)?.verify_id(&h.id)?;
            if o.header.payload_blake3 != h.payload_blake3 {
                return Err(FormatError::PayloadChecksum.into());
            }
            return Ok(o.payload.slice(start as usize..end as usize));
        };
        let at = len as u64;
        let got = self
            .get_range(key, at + blocks.start..at + blocks.end)
            .await?;
        if got.len() as u64 != blocks.end - blocks.start {
            return Err(FormatError::Truncated {
                part: "payload",
                need: blocks.end - blocks.start,
                have: got.len() as u64,
            }
            .into());
        }
        h.verify_blocks(blocks.start, &got, seal)?;
        let wanted = got.slice((start - blocks.start) as usize..(end - blocks.start) as usize);
        if h.sealing.is_none() {
            return Ok(wanted);
        }
        let mut plain = wanted.to_vec();
        h.decipher(start, &mut plain, seal)?;
        Ok(Bytes::from(plain))
    }

    /// Removes the object under `key`; removing one that is not there succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), TierError> {
        let deadline = self.config.attempt_timeout(0);
        self.retrying("DELETE", key, deadline, || async {
            self.sdk
                .delete_object()
                .bucket(&self.config.bucket)
                .key(key)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("DELETE", key, e))
        })
        .await
    }

    async fn get_inner(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes, TierError> {
        // The answer's headers are due within the base timeout; the body then gets the time
        // its length needs at the minimum rate, counted from the same start.
        let first = self.config.attempt_timeout(0);
        let header = range
            .as_ref()
            .map(|r| format!("bytes={}-{}", r.start, r.end - 1));
        self.retrying("GET", key, Duration::MAX, || async {
            let start = tokio::time::Instant::now();
            let send = self
                .sdk
                .get_object()
                .bucket(&self.config.bucket)
                .key(key)
                .set_range(header.clone())
                .send();
            let out = match tokio::time::timeout(first, send).await {
                Ok(r) => r.map_err(|e| classify("GET", key, e))?,
                Err(_) => return Err(timeout("GET", key, first)),
            };
            let len = out.content_length().and_then(|l| u64::try_from(l).ok());
            let whole = self.config.attempt_timeout(len.unwrap_or(0));
            let left = whole.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, out.body.collect()).await {
                Ok(Ok(body)) => Ok(body.into_bytes()),
                Ok(Err(e)) => Err(TierError::Connection {
                    op: "GET",
                    key: key.to_string(),
                    detail: format!("reading the body: {}", DisplayErrorContext(&e)),
                    attempts: 1,
                }),
                Err(_) => Err(timeout("GET", key, whole)),
            }
        })
        .await
    }

    /// Runs `attempt` under a permit and `deadline` until it succeeds, fails for good, or
    /// the attempts run out.
    async fn retrying<T, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        deadline: Duration,
        mut attempt: F,
    ) -> Result<T, TierError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, TierError>>,
    {
        let policy = &self.config.retry;
        let mut n = 0;
        loop {
            n += 1;
            let result = {
                let _permit = self
                    .limit
                    .acquire()
                    .await
                    .map_err(|_| TierError::Internal {
                        op,
                        key: key.to_string(),
                        detail: "request limiter closed".into(),
                    })?;
                match tokio::time::timeout(deadline, attempt()).await {
                    Ok(r) => r,
                    Err(_) => Err(timeout(op, key, deadline)),
                }
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && n < policy.max_attempts => {
                    let pause = policy.backoff(n, &mut rand::thread_rng());
                    tracing::warn!(op, key, attempt = n, ?pause, error = %e, "retrying");
                    tokio::time::sleep(pause).await;
                }
                Err(e) => {
                    tracing::debug!(op, key, attempts = n, error = %e, "failed");
                    return Err(e.after_attempts(n));
                }
            }
        }
    }
}

fn timeout(op: &'static str, key: &str, after: Duration) -> TierError {
    TierError::Timeout {
        op,
        key: key.to_string(),
        after,
        attempts: 1,
    }
}

/// Sorts an SDK error into ours: what is worth retrying, what is an answer.
fn classify<E>(op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> TierError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let key = key.to_string();
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("").to_string();
            let message = s.err().message().unwrap_or("").to_string();
            classify_status(op, key, status, code, message)
        }
        // An answer that could not be read (cut short, not HTTP): the connection's fault.
        SdkError::ResponseError(r) if r.raw().status().is_server_error() => {
            TierError::Unavailable {
                op,
                key,
                status: r.raw().status().as_u16(),
                code: String::new(),
                attempts: 1,
            }
        }
        SdkError::ResponseError(_) => TierError::Connection {
            op,
            key,
            detail,
            attempts: 1,
        },
        SdkError::DispatchFailure(d) if d.is_timeout() => TierError::Timeout {
            op,
            key,
            after: Duration::ZERO,
            attempts: 1,
        },
        SdkError::DispatchFailure(d) if !d.is_user() => TierError::Connection {
            op,
            key,
            detail,
            attempts: 1,
        },
        SdkError::TimeoutError(_) => TierError::Timeout {
            op,
            key,
            after: Duration::ZERO,
            attempts: 1,
        },
        _ => TierError::Internal { op, key, detail },
    }
}

/// S3's answers by status and code: 404 `NoSuchKey` is a typed miss; 5xx, 429 and the codes
/// S3 documents as "slow down and retry" are transient; every other 4xx is final.
fn classify_status(
    op: &'static str,
    key: String,
    status: u16,
    code: String,
    message: String,
) -> TierError {
    const THROTTLING: &[&str] = &[
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    ];
    if status == 404 && matches!(code.as_str(), "NoSuchKey" | "NotFound" | "") {
        TierError::NotFound { key }
    } else if status >= 500 || status == 429 || THROTTLING.contains(&code.as_str()) {
        TierError::Unavailable {
            op,
            key,
            status,
            code,
            attempts: 1,
        }
    } else {
        TierError::Refused {
            op,
            key,
            status,
            code,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, code: &str) -> TierError {
        classify_status("GET", "k".into(), status, code.into(), String::new())
    }

    #[test]
    fn answers_sort_into_miss_transient_and_final() {
        assert!(matches!(
            class(404, "NoSuchKey"),
            TierError::NotFound { .. }
        ));
        assert!(matches!(
            class(404, "NoSuchBucket"),
            TierError::Refused { .. }
        ));
        for (s, c) in [
            (503, "SlowDown"),
            (500, "InternalError"),
            (429, ""),
            (400, "RequestTimeout"),
        ] {
            assert!(class(s, c).is_transient(), "{s} {c}");
        }
        for (s, c) in [
            (403, "AccessDenied"),
            (400, "InvalidArgument"),
            (416, "InvalidRange"),
        ] {
            assert!(matches!(class(s, c), TierError::Refused { .. }), "{s} {c}");
        }
    }

    #[test]
    fn a_store_needs_credentials_and_a_sane_config() {
        let no_env = |_: &str| None;
        let c = TierConfig::new("http://127.0.0.1:1", "b");
        assert!(matches!(
            Store::with_env(c.clone(), no_env),
            Err(TierError::Config(_))
        ));
        let env = |k: &str| Some(format!("{k}-value"));
        assert!(Store::with_env(c, env).is_ok());
        assert!(Store::with_env(TierConfig::new("ftp://x", "b"), env).is_err());
    }
}
