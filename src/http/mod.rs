//! The HTTP shell around every source: timeouts, retries with exponential
//! backoff and full jitter, `Retry-After`, authentication, and redaction.
//!
//! Retryable: connection errors, timeouts, 429, 500, 502, 503, 504, and
//! whatever a source-specific classifier says (Egnyte's 403 + Mashery code).
//! Any other 4xx fails at once with the status and the message from the body;
//! a 401 first refreshes an OAuth token when it can. A shared
//! [`rate::RateLimiter`] spaces every attempt of every request of a sync.
//! After the last attempt the error says "failed after N attempts". Secrets
//! are wrapped in [`Secret`] (whose `Debug` prints `***`) and every error text
//! is passed through [`HttpClient::redact`] (every encoding of every secret,
//! see [`redact`]) before it leaves this module.
//!
//! Credentials go only to the origins the client is allowed ([`HttpClient::for_origins`],
//! by default the origin of its first request): a next-page URL or a redirect
//! to another host is requested without `Authorization`, API-key header or
//! API-key query parameter. Redirects are followed here, not by reqwest, so
//! that this holds for custom headers too.

mod error;
pub mod oauth;
pub mod rate;
pub mod redact;
mod retry;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use url::Url;

use self::error::kind_text;
pub use self::error::{error_message, human_duration, HttpError, HttpErrorKind};
pub use self::retry::{
    default_verdict, is_retryable_status, retry_after, Classifier, RetryPolicy, Verdict,
};

/// A credential. Never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret's value, for building a request header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Counters shared by every request of a sync, for the end-of-sync summary.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// Response body bytes received (errors and retries included).
    pub bytes: AtomicU64,
    /// Responses by HTTP status (every attempt).
    pub statuses: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
    /// Waits before a retry (rate limits, server errors), and their total.
    pub waits: AtomicU64,
    pub waited_ms: AtomicU64,
    /// OAuth access tokens obtained or refreshed (expiring, or refused with a 401).
    pub token_refreshes: AtomicU64,
    /// The retry wait in progress: until when, and why (`HTTP 429 (Retry-After)`).
    pub waiting: std::sync::Mutex<Option<(std::time::Instant, String)>>,
}

impl HttpMetrics {
    /// A wait of `d` before a retry starts.
    fn begin_wait(&self, d: Duration, why: String) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.waited_ms
            .fetch_add(d.as_millis() as u64, Ordering::Relaxed);
        let until = std::time::Instant::now() + d;
        let mut w = self.waiting.lock().expect("not poisoned");
        if w.as_ref().is_none_or(|(u, _)| *u < until) {
            *w = Some((until, why));
        }
    }

    /// The retry wait in progress, if any: time left and why.
    pub fn current_wait(&self) -> Option<(Duration, String)> {
        let w = self.waiting.lock().expect("not poisoned");
        let (until, why) = w.as_ref()?;
        let left = until.checked_duration_since(std::time::Instant::now())?;
        Some((left, why.clone()))
    }

    fn count_status(&self, s: StatusCode) {
        *self
            .statuses
            .lock()
            .expect("not poisoned")
            .entry(s.as_u16())
            .or_default() += 1;
    }
}

/// A buffered response.
#[derive(Debug, Clone)]
pub struct Response {
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request to send (possibly several times).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<Bytes>,
}

impl Request {
    pub fn get(url: Url) -> Self {
        Request {
            method: Method::GET,
            url,
            headers: Vec::new(),
            body: None,
        }
    }

    /// A POST with a JSON body.
    pub fn post_json(url: Url, body: &serde_json::Value) -> Self {
        Request {
            method: Method::POST,
            url,
            headers: vec![(
                reqwest::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: Some(Bytes::from(body.to_string())),
        }
    }
}

/// What one attempt produced.
enum Sent {
    Buffered(Response),
    Streaming(reqwest::Response),
}

/// Where a client gets renewable access tokens. Implemented by
/// [`oauth::OAuth`], which itself sends its token requests through an
/// [`HttpClient`]; this trait keeps the client from depending on it.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// What precedes the token in `Authorization` (empty: the token alone).
    fn scheme(&self) -> &str;
    /// The current access token.
    fn access(&self) -> Secret;
    /// Counts the tokens obtained; a refresh asked for an older one is shared.
    fn generation(&self) -> u64;
    /// A new token can be had.
    fn can_refresh(&self) -> bool;
    /// The token is about to expire, or not obtained yet.
    fn expiring(&self) -> bool;
    /// Every token value, for redaction.
    fn secrets(&self) -> Vec<String>;
    /// Get a new token unless another request did since generation `seen`.
    fn refresh(&self, seen: u64) -> futures::future::BoxFuture<'_, Result<(), HttpError>>;
}

/// How requests authenticate.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Bearer(Secret),
    /// An access token that can be renewed (on 401, or before it expires):
    /// an OAuth grant or a login session ([`oauth::OAuth`]).
    OAuth(Arc<dyn TokenSource>),
    /// A header whose whole value is secret (`Authorization: Basic …`, `X-Api-Key: …`).
    Header(HeaderName, Secret),
    /// A query parameter whose value is secret (`?api_key=…`), added to each request.
    Query(String, Secret),
}

/// The HTTP client every connector uses.
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    policy: RetryPolicy,
    auth: Auth,
    headers: Vec<(HeaderName, HeaderValue)>,
    secrets: Arc<Vec<String>>,
    limiter: Option<Arc<rate::RateLimiter>>,
    header_budget: Option<rate::HeaderBudget>,
    classify: Option<Classifier>,
    /// Where credentials may be sent; empty until set or until the first request.
    origins: Arc<std::sync::OnceLock<Vec<url::Origin>>>,
    pub metrics: Arc<HttpMetrics>,
}

/// Redirects followed for one request before giving up.
const MAX_REDIRECTS: usize = 10;

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("policy", &self.policy)
            .field("auth", &self.auth)
            .finish()
    }
}

impl HttpClient {
    pub fn new(policy: RetryPolicy, auth: Auth) -> Self {
        let inner = reqwest::Client::builder()
            .user_agent(concat!("etl/", env!("CARGO_PKG_VERSION")))
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout.min(Duration::from_secs(10)))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            // Followed in `send_once`, where credentials stay with their origin.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("TLS backend initialises");
        let secrets = match &auth {
            Auth::Bearer(s) | Auth::Header(_, s) | Auth::Query(_, s) if !s.expose().is_empty() => {
                vec![s.expose().to_string()]
            }
            _ => Vec::new(),
        };
        HttpClient {
            inner,
            policy,
            auth,
            headers: Vec::new(),
            secrets: Arc::new(secrets),
            limiter: None,
            header_budget: None,
            classify: None,
            origins: Arc::new(std::sync::OnceLock::new()),
            metrics: Arc::new(HttpMetrics::default()),
        }
    }

    /// Send credentials only to these URLs' origins (scheme, host and port).
    /// Without this call, the origin of the first request is the only one.
    pub fn for_origins<'u>(mut self, urls: impl IntoIterator<Item = &'u Url>) -> Self {
        let mut list: Vec<url::Origin> = Vec::new();
        for u in urls {
            let o = u.origin();
            if !list.contains(&o) {
                list.push(o);
            }
        }
        let lock = std::sync::OnceLock::new();
        let _ = lock.set(list);
        self.origins = Arc::new(lock);
        self
    }

    /// Whether credentials may be sent to `url`.
    pub fn may_authenticate(&self, url: &Url) -> bool {
        self.origins
            .get_or_init(|| vec![url.origin()])
            .contains(&url.origin())
    }

    /// Space every attempt by this shared budget.
    pub fn with_rate_limit(mut self, l: Arc<rate::RateLimiter>) -> Self {
        self.limiter = Some(l);
        self
    }

    /// Read error responses this way first (see [`default_verdict`]).
    /// Pause the rate budget when an answer says none is left (see
    /// [`rate::HeaderBudget`]); takes effect with [`with_rate_limit`](Self::with_rate_limit).
    pub fn with_header_budget(mut self, b: rate::HeaderBudget) -> Self {
        self.header_budget = Some(b);
        self
    }

    pub fn with_classifier(mut self, c: Classifier) -> Self {
        self.classify = Some(c);
        self
    }

    /// Redact these too (credentials sent in bodies).
    pub fn with_secrets(mut self, more: &[&Secret]) -> Self {
        let mut all = (*self.secrets).clone();
        all.extend(
            more.iter()
                .map(|s| s.expose().to_string())
                .filter(|s| !s.is_empty()),
        );
        self.secrets = Arc::new(all);
        self
    }

    /// Add a header sent with every request.
    pub fn with_header(self, name: &'static str, value: &str) -> Self {
        self.with_header_value(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).expect("valid header value"),
        )
    }

    /// A header sent with every request (one a user configured).
    pub fn with_header_value(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Share counters with other clients of the same sync.
    pub fn with_metrics(mut self, m: Arc<HttpMetrics>) -> Self {
        self.metrics = m;
        self
    }

    /// Replace every known secret in `text` with `***` (refreshed tokens included).
    pub fn redact(&self, text: &str) -> String {
        match &self.auth {
            Auth::OAuth(o) => {
                let mut all = (*self.secrets).clone();
                all.extend(o.secrets());
                redact::redact(text, &all)
            }
            _ => redact::redact(text, &self.secrets),
        }
    }

    /// GET a URL, retrying as the policy says.
    pub async fn get(&self, url: Url) -> Result<Response, HttpError> {
        self.send(Request::get(url)).await
    }

    /// Send a request, retrying as the policy says. Returns only 2xx responses.
    pub async fn send(&self, req: Request) -> Result<Response, HttpError> {
        match self.send_inner(req, false).await? {
            Sent::Buffered(r) => Ok(r),
            Sent::Streaming(_) => unreachable!("not asked to stream"),
        }
    }

    /// Like [`send`](Self::send), but a 2xx answer is returned as soon as
    /// its headers arrived, its body left to the caller to stream (exports
    /// too large to hold in memory). Failing answers are retried as usual.
    pub async fn send_streaming(&self, req: Request) -> Result<reqwest::Response, HttpError> {
        match self.send_inner(req, true).await? {
            Sent::Streaming(r) => Ok(r),
            Sent::Buffered(_) => unreachable!("a success is streamed"),
        }
    }

    /// Hold every request when the answer says the server's budget is spent.
    fn spend_announced(&self, r: &Response) {
        let (Some(b), Some(l)) = (&self.header_budget, &self.limiter) else {
            return;
        };
        if let Some(d) = b.wait(&r.headers) {
            let d = d.min(self.policy.max_retry_after);
            tracing::info!(url = %self.redact(r.url.as_str()), wait_secs = d.as_secs_f64(), "the server's request budget is spent; holding requests until it resets");
            l.pause_for(d);
        }
    }

    async fn send_inner(&self, req: Request, stream: bool) -> Result<Sent, HttpError> {
        let mut attempt = 0u32;
        let mut refreshed = false;
        loop {
            attempt += 1;
            if let Some(l) = &self.limiter {
                l.acquire().await;
            }
            let oauth = match &self.auth {
                Auth::OAuth(o) => Some(o),
                _ => None,
            };
            if let Some(o) = oauth.filter(|o| o.expiring()) {
                o.refresh(o.generation()).await?;
                // Each refresh makes a new generation (concurrent askers share one).
                self.metrics
                    .token_refreshes
                    .fetch_max(o.generation(), Ordering::Relaxed);
            }
            self.metrics.requests.fetch_add(1, Ordering::Relaxed);
            let generation = oauth.map_or(0, |o| o.generation());
            let outcome = self.send_once(&req, stream).await;
            match &outcome {
                Ok(Sent::Streaming(r)) => self.metrics.count_status(r.status()),
                Ok(Sent::Buffered(r)) => {
                    self.metrics.count_status(r.status);
                    self.spend_announced(r);
                }
                Err(_) => {}
            }
            let (retry_after, kind) = match outcome {
                Ok(Sent::Streaming(r)) => return Ok(Sent::Streaming(r)),
                Ok(Sent::Buffered(resp)) => {
                    if resp.status.is_success() {
                        return Ok(Sent::Buffered(resp));
                    }
                    let kind = status_kind(self, &resp);
                    let verdict = self
                        .classify
                        .as_ref()
                        .and_then(|c| c(&resp))
                        .unwrap_or_else(|| default_verdict(&resp));
                    match verdict {
                        Verdict::Retry(after) => (after, kind),
                        Verdict::Unauthorized => match oauth {
                            Some(o) if o.can_refresh() && !refreshed => {
                                // Once per request: a refreshed token refused again is final.
                                refreshed = true;
                                attempt -= 1;
                                tracing::info!(url = %self.redact(req.url.as_str()), "access token refused; refreshing it");
                                o.refresh(generation).await?;
                                self.metrics
                                    .token_refreshes
                                    .fetch_max(o.generation(), Ordering::Relaxed);
                                continue;
                            }
                            _ => return Err(self.error(&req, attempt, kind)),
                        },
                        Verdict::Quota(resets_in) => {
                            let HttpErrorKind::Status { status, message } = kind else {
                                unreachable!("status_kind builds a Status")
                            };
                            let kind = HttpErrorKind::Quota {
                                status,
                                message,
                                resets_in: resets_in.map(|d| d.as_secs()),
                            };
                            return Err(self.error(&req, attempt, kind));
                        }
                        Verdict::Fail => return Err(self.error(&req, attempt, kind)),
                    }
                }
                Err(kind) => (None, kind),
            };
            if attempt >= self.policy.max_attempts {
                return Err(self.error(&req, attempt, kind));
            }
            let wait = self.retry_wait(&req, attempt, retry_after, &kind);
            tokio::time::sleep(wait).await;
        }
    }

    /// Before a retry: how long to wait (the server's `Retry-After`, which
    /// pauses every request sharing the budget, or the backoff), counted
    /// and logged.
    fn retry_wait(
        &self,
        req: &Request,
        attempt: u32,
        retry_after: Option<Duration>,
        kind: &HttpErrorKind,
    ) -> Duration {
        let wait = match retry_after {
            Some(d) => {
                let d = d.min(self.policy.max_retry_after);
                // The server's word holds for every request sharing the budget.
                if let Some(l) = &self.limiter {
                    l.pause_for(d);
                }
                d
            }
            None => self.policy.backoff(attempt),
        };
        self.metrics.retries.fetch_add(1, Ordering::Relaxed);
        let why = match kind {
            HttpErrorKind::Status { status, .. } if retry_after.is_some() => {
                format!("HTTP {status}, as the server's Retry-After asks")
            }
            HttpErrorKind::Status { status, .. } => format!("HTTP {status}"),
            HttpErrorKind::Timeout => "a timeout".into(),
            _ => "a connection error".into(),
        };
        self.metrics.begin_wait(wait, why);
        tracing::warn!(
            method = %req.method,
            url = %self.redact(req.url.as_str()),
            attempt,
            wait_ms = wait.as_millis() as u64,
            error = %self.redact(&kind_text(kind)),
            "request failed, retrying"
        );
        wait
    }

    /// One attempt: the request, and the redirects it leads to. Credentials
    /// are attached to each hop only when its origin is allowed.
    async fn send_once(&self, req: &Request, stream: bool) -> Result<Sent, HttpErrorKind> {
        let mut method = req.method.clone();
        let mut url = req.url.clone();
        let mut body = req.body.clone();
        for _ in 0..=MAX_REDIRECTS {
            let resp = self
                .request_builder(&method, &url, req, body.as_ref())?
                .send()
                .await
                .map_err(|e| transport_kind(self, &e))?;
            let status = resp.status();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            if let (true, Some(loc)) = (status.is_redirection(), location) {
                let next = url.join(&loc).map_err(|e| {
                    HttpErrorKind::Transport(
                        self.redact(&format!("redirected to {loc:?}, which is not a URL: {e}")),
                    )
                })?;
                if !self.may_authenticate(&next) {
                    tracing::debug!(from = %self.redact(url.as_str()), to = %self.redact(next.as_str()),
                        "redirected to another origin; following without credentials");
                }
                // 303, and 301/302 after a POST, continue as a GET without a body.
                if status == StatusCode::SEE_OTHER
                    || (method == Method::POST && matches!(status.as_u16(), 301 | 302))
                {
                    method = Method::GET;
                    body = None;
                }
                url = next;
                continue;
            }
            if stream && status.is_success() {
                return Ok(Sent::Streaming(resp));
            }
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| transport_kind(self, &e))?;
            self.metrics
                .bytes
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            return Ok(Sent::Buffered(Response {
                url,
                status,
                headers,
                body,
            }));
        }
        Err(HttpErrorKind::Transport(format!(
            "more than {MAX_REDIRECTS} redirects (the last to {})",
            self.redact(url.as_str())
        )))
    }

    /// A request to `url` with the client's headers, and its credentials
    /// when `url` is on an allowed origin.
    fn request_builder(
        &self,
        method: &Method,
        url: &Url,
        req: &Request,
        body: Option<&Bytes>,
    ) -> Result<reqwest::RequestBuilder, HttpErrorKind> {
        let authenticate = self.may_authenticate(url);
        let mut url = url.clone();
        if let (Auth::Query(name, v), true) = (&self.auth, authenticate) {
            url.query_pairs_mut().append_pair(name, v.expose());
        }
        let mut b = self.inner.request(method.clone(), url);
        let token = match &self.auth {
            _ if !authenticate => None,
            Auth::Bearer(t) => Some((AUTHORIZATION, format!("Bearer {}", t.expose()))),
            Auth::OAuth(o) if o.scheme().is_empty() => {
                Some((AUTHORIZATION, o.access().expose().to_string()))
            }
            Auth::OAuth(o) => Some((
                AUTHORIZATION,
                format!("{} {}", o.scheme(), o.access().expose()),
            )),
            Auth::Header(name, v) => Some((name.clone(), v.expose().to_string())),
            Auth::Query(..) | Auth::None => None,
        };
        if let Some((name, token)) = token {
            let mut v = HeaderValue::from_str(&token).map_err(|_| {
                HttpErrorKind::Transport(
                    "the API key contains characters not allowed in a header".into(),
                )
            })?;
            v.set_sensitive(true);
            b = b.header(name, v);
        }
        for (k, v) in self.headers.iter().chain(req.headers.iter()) {
            b = b.header(k.clone(), v.clone());
        }
        if let Some(body) = body {
            b = b.body(body.clone());
        }
        Ok(b)
    }

    fn error(&self, req: &Request, attempts: u32, kind: HttpErrorKind) -> HttpError {
        HttpError {
            method: req.method.to_string(),
            url: self.redact(req.url.as_str()),
            attempts,
            kind,
        }
    }
}

fn transport_kind(client: &HttpClient, e: &reqwest::Error) -> HttpErrorKind {
    if e.is_timeout() {
        return HttpErrorKind::Timeout;
    }
    // reqwest's Display includes the URL; keep the cause chain, redacted.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    HttpErrorKind::Transport(client.redact(&msg))
}

fn status_kind(client: &HttpClient, resp: &Response) -> HttpErrorKind {
    HttpErrorKind::Status {
        status: resp.status.as_u16(),
        // Redacted whole, before the message is picked and shortened.
        message: error_message(
            client
                .redact(&String::from_utf8_lossy(&resp.body))
                .as_bytes(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("ak_supersecret");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        let c = HttpClient::new(RetryPolicy::default(), Auth::Bearer(s));
        assert_eq!(c.redact("bad key ak_supersecret!"), "bad key ***!");
        assert!(!format!("{c:?}").contains("supersecret"));
    }

    #[test]
    fn error_messages_from_common_shapes() {
        assert_eq!(
            error_message(br#"{"error":{"code":"invalid_params","message":"bad"}}"#),
            "invalid_params: bad"
        );
        assert_eq!(
            error_message(br#"{"detail":"Invalid limit"}"#),
            "Invalid limit"
        );
        assert_eq!(error_message(b"plain text\n"), "plain text");
    }

    #[test]
    fn error_display_counts_attempts() {
        let e = HttpError {
            method: "GET".into(),
            url: "http://h/users".into(),
            attempts: 5,
            kind: HttpErrorKind::Status {
                status: 503,
                message: "down".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "GET http://h/users failed after 5 attempts: HTTP 503 Service Unavailable: down"
        );
    }
}
