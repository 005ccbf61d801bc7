//! What every mock shares: the request as a mock sees it, the response
//! type, and a deterministic generator for mock data. The leaf of the
//! playground: the mocks use it, the server (`mod.rs`) uses them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// A tiny deterministic generator (SplitMix64), stable across platforms and crate versions.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A random (version 4) UUID in its hyphenated lowercase form.
    pub fn uuid(&mut self) -> String {
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            self.next_u64() as u32,
            self.below(1 << 16),
            self.below(1 << 12),
            0x8000 | self.below(1 << 14),
            self.next_u64() & 0xffff_ffff_ffff
        )
    }
}

pub(crate) type Resp = Response<Full<Bytes>>;

pub(crate) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(body.into()))
        .expect("valid response")
}

/// A parsed request handed to a mock.
pub(crate) struct MockRequest {
    pub method: hyper::Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl MockRequest {
    pub fn param(&self, k: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    pub fn bearer(&self) -> Option<&str> {
        self.headers
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")
    }
}
