//! A minimal HTTP/1.1 client for `cfs admin` (and the tests): one request per connection,
//! `Connection: close`, a body of known length or chunked. The admin API is on loopback or a
//! trusted network and speaks plain HTTP, so this is all it needs.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach the admin listener at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("admin listener at {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("admin listener at {0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    #[error("admin listener at {0} sent a malformed response")]
    Malformed(SocketAddr),
}

#[allow(dead_code)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

// `text` and `header` serve the tests, which include this file (`#[path]`).
#[allow(dead_code)]
impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` with an optional bearer token and JSON body; bounded by `timeout`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    match tokio::time::timeout(timeout, exchange(addr, method, path, token, body)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout(addr, timeout)),
    }
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<Response, HttpError> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| HttpError::Connect { addr, source })?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: cfs\r\n"
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let io = |e| HttpError::Io(addr, e);
    s.write_all(req.as_bytes()).await.map_err(io)?;
    // Read until the response is whole: a peer may keep the connection open despite
    // `Connection: close` (chromedriver does). 64 MiB bounds a misbehaving peer.
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if complete(&raw) {
            break;
        }
        let n = s.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > 64 << 20 {
            return Err(HttpError::Malformed(addr));
        }
    }
    parse(&raw).ok_or(HttpError::Malformed(addr))
}

/// Whether `raw` holds a whole response (headers and a body of known length or chunked).
fn complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let body = raw.len() - end - 4;
    if let Some(l) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body >= l;
    }
    if head.contains("transfer-encoding: chunked") {
        return raw.ends_with(b"0\r\n\r\n");
    }
    false
}

fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        let mut out = Vec::new();
        let mut at = rest;
        loop {
            let nl = at.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&at[..nl]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = &at[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(at.get(..size)?);
            at = at.get(size + 2..)?;
        }
        out
    } else {
        match headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            Some((_, v)) => rest.get(..v.parse::<usize>().ok()?)?.to_vec(),
            None => rest.to_vec(),
        }
    };
    Some(Response {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_and_chunked_bodies() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        assert_eq!((r.status, r.text()), (200, "hi".to_string()));
        let r = parse(
            b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text()), (401, "abcde".to_string()));
        assert!(parse(b"garbage").is_none());
    }
}
