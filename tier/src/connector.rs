//! The HTTP client handed to the S3 SDK: hyper 1 over rustls with the *ring* provider.
//!
//! Hand-written because the SDK's own client (`aws-smithy-http-client`) picks its rustls
//! provider through hyper-rustls with default features, which always builds `aws-lc-sys` (a
//! C/cmake build that slows every fresh CI build), even when ring is asked for. This adapter is
//! the one piece that client does for us: turn the SDK's request into a hyper request and the
//! answer back. Timeouts and retries are not here: `store.rs` owns them, per request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::error::TierError;

type Hyper = Client<HttpsConnector<TcpConnector>, SdkBody>;

/// One connection pool shared by every SDK operation of a [`crate::Store`].
#[derive(Clone)]
pub(crate) struct RingClient {
    client: Arc<Hyper>,
}

impl fmt::Debug for RingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RingClient")
    }
}

impl RingClient {
    /// A client that speaks `http://` and `https://` (system roots), with `connect_timeout` on
    /// the TCP connect. Idle connections are kept 30 s, as many as the concurrency bound uses.
    pub(crate) fn new(connect_timeout: Duration, max_idle: usize) -> Result<Self, TierError> {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| TierError::Config(format!("TLS roots: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(max_idle)
            .build(https);
        Ok(RingClient {
            client: Arc::new(client),
        })
    }

    pub(crate) fn shared(self) -> SharedHttpClient {
        SharedHttpClient::new(self)
    }
}

impl HttpClient for RingClient {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for RingClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move {
            let request = request
                .try_into_http1x()
                .map_err(|e| ConnectorError::other(Box::new(e), None))?;
            let response = client.request(request).await.map_err(classify)?;
            let response = response.map(SdkBody::from_body_1_x);
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(Box::new(e), None))
        })
    }
}

/// Failures to reach the store or to get a whole answer (refused, reset, closed early) are
/// I/O errors to the SDK, which `store.rs` retries; a request hyper refuses to send is not.
fn classify(e: hyper_util::client::legacy::Error) -> ConnectorError {
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if s.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
        {
            return ConnectorError::other(Box::new(e), None);
        }
        source = s.source();
    }
    ConnectorError::io(Box::new(e))
}
