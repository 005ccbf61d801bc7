//! The built-in playground: local mock servers of the supported APIs, for the
//! demo (`etl sync userflow --playground`), the tests and the benches.
//!
//! One HTTP/1.1 server on 127.0.0.1 serves every mock; TCP_NODELAY is on so
//! the configured per-request latency is the latency a client sees. Data is
//! generated from a seed, so a playground started twice with the same options
//! serves the same records. Faults are either random (`fault_rate`: 429 with
//! `Retry-After`, 500, 503) or scripted one request at a time
//! ([`Playground::push_fault`]) for tests.

pub mod csv_export;
pub mod egnyte;
pub mod fivetran;
pub mod prefect;
pub mod userflow;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use self::wire::SplitMix64;
use self::wire::{json_response, MockRequest, Resp};

/// The playground's API key when none is given.
pub const DEFAULT_API_KEY: &str = "ak_playground_0123456789abcdef";

/// How to run the playground.
#[derive(Debug, Clone)]
pub struct PlaygroundOptions {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Userflow users to generate.
    pub users: usize,
    /// Prefect flow runs to generate (with 40 flows and 25 deployments).
    pub flow_runs: usize,
    /// Added to every response.
    pub latency: Duration,
    /// Fraction (0..1) of requests answered with a random retryable error.
    pub fault_rate: f64,
    /// Seed of the generated data and of random faults.
    pub seed: u64,
    /// The Bearer key clients must send (Egnyte: the first access token).
    pub api_key: String,
    /// Egnyte's data sizes, throttling and token lifetime.
    pub egnyte: egnyte::EgnyteOptions,
    /// Users of the Fivetran api playground mock (the real one has 200).
    pub fivetran_users: usize,
}

impl Default for PlaygroundOptions {
    fn default() -> Self {
        PlaygroundOptions {
            port: 0,
            users: 1_000,
            flow_runs: 2_000,
            latency: Duration::ZERO,
            fault_rate: 0.0,
            seed: 42,
            api_key: DEFAULT_API_KEY.to_string(),
            egnyte: egnyte::EgnyteOptions::default(),
            fivetran_users: 200,
        }
    }
}

/// Rewrites a mock's real answer body (a hostile API: the right page, subtly wrong).
pub type BodyEdit = Arc<dyn Fn(&[u8]) -> Vec<u8> + Send + Sync>;

/// A scripted fault for the next request to a mock API.
#[derive(Clone)]
pub enum Fault {
    /// Answer with this status, optional `Retry-After`, and body.
    Status {
        status: u16,
        retry_after: Option<String>,
        body: String,
    },
    /// Answer 200 with a truncated, unparseable body.
    Malformed,
    /// Wait this long before answering normally (to trigger client timeouts).
    Delay(Duration),
    /// Answer 200 with this body instead of the real one (a wrong shape).
    Body(String),
    /// Answer with the real response, its body passed through this function.
    Edit(BodyEdit),
    /// Answer 302 with this `Location`.
    Redirect(String),
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Status { status, .. } => write!(f, "Status({status})"),
            Fault::Malformed => f.write_str("Malformed"),
            Fault::Delay(d) => write!(f, "Delay({d:?})"),
            Fault::Body(b) => write!(f, "Body({} bytes)", b.len()),
            Fault::Edit(_) => f.write_str("Edit"),
            Fault::Redirect(l) => write!(f, "Redirect({l})"),
        }
    }
}

/// Shared server state.
pub(crate) struct Shared {
    pub opts: PlaygroundOptions,
    pub userflow: userflow::UserflowMock,
    pub prefect: prefect::PrefectMock,
    pub egnyte: egnyte::EgnyteMock,
    pub fivetran: fivetran::FivetranMock,
    /// Scripted faults by request number (1-based, counting every request).
    faults: Mutex<BTreeMap<u64, Fault>>,
    /// Scripted faults for the next request to a path ending this way.
    path_faults: Mutex<Vec<(String, Fault)>>,
    rng: Mutex<SplitMix64>,
    pub requests: AtomicU64,
    /// Requests being answered now, and the most at once.
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// The same per path: (now, most at once).
    path_in_flight: Mutex<HashMap<String, (u64, u64)>>,
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a Shared, String);

impl<'a> InFlight<'a> {
    fn enter(s: &'a Shared, path: &str) -> Self {
        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut paths = s.path_in_flight.lock().unwrap();
        let e = paths.entry(path.to_string()).or_default();
        e.0 += 1;
        e.1 = e.1.max(e.0);
        InFlight(s, path.to_string())
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(e) = self.0.path_in_flight.lock().unwrap().get_mut(&self.1) {
            e.0 -= 1;
        }
    }
}

/// A running playground; stops when dropped.
pub struct Playground {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Playground {
    /// Bind and start serving in the background of the current tokio runtime.
    pub async fn start(opts: PlaygroundOptions) -> std::io::Result<Playground> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], opts.port))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            userflow: userflow::UserflowMock::generate(opts.users, opts.seed),
            prefect: prefect::PrefectMock::generate(opts.flow_runs, opts.seed),
            egnyte: egnyte::EgnyteMock::generate(opts.egnyte.clone(), &opts.api_key, opts.seed),
            fivetran: fivetran::FivetranMock::generate(opts.fivetran_users, opts.seed),
            faults: Mutex::new(BTreeMap::new()),
            path_faults: Mutex::new(Vec::new()),
            rng: Mutex::new(SplitMix64(opts.seed ^ 0x5eed)),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            path_in_flight: Mutex::new(HashMap::new()),
            opts,
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "playground accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let s = s.clone();
                        async move {
                            // A generated export is streamed, never held.
                            if req.uri().path() == "/export/csv" {
                                let rows = req.uri().query().and_then(|q| {
                                    url::form_urlencoded::parse(q.as_bytes())
                                        .find(|(k, _)| k == "rows")
                                        .and_then(|(_, v)| v.parse::<u64>().ok())
                                });
                                if let Some(rows) = rows {
                                    s.requests.fetch_add(1, Ordering::Relaxed);
                                    return Ok::<_, Infallible>(csv_export::streamed_export(rows));
                                }
                            }
                            Ok::<_, Infallible>(handle(s, req).await.map(|b| b.boxed()))
                        }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Playground { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api_key(&self) -> &str {
        &self.shared.opts.api_key
    }

    /// The Userflow mock's data, to change it between syncs and to compare with.
    pub fn userflow(&self) -> &userflow::UserflowMock {
        &self.shared.userflow
    }

    /// Make the next request not yet given a fault fail this way (faults queue up).
    pub fn push_fault(&self, f: Fault) {
        let mut faults = self.shared.faults.lock().unwrap();
        let next = self
            .requests()
            .max(faults.keys().next_back().copied().unwrap_or(0))
            + 1;
        faults.insert(next, f);
    }

    /// Make request number `n` (1-based, counting every request served) fail this way.
    pub fn fault_at(&self, n: u64, f: Fault) {
        self.shared.faults.lock().unwrap().insert(n, f);
    }

    /// Make the next request whose path ends with `suffix` (for example
    /// `/flow_runs/filter`) fail this way; several queue up in order.
    pub fn fault_on(&self, suffix: &str, f: Fault) {
        self.shared
            .path_faults
            .lock()
            .unwrap()
            .push((suffix.to_string(), f));
    }

    /// The most requests answered at the same time since the last call.
    pub fn take_max_in_flight(&self) -> u64 {
        self.shared.max_in_flight.swap(0, Ordering::SeqCst)
    }

    /// The most requests to paths ending with `suffix` answered at the same
    /// time since the last call (for one path).
    pub fn take_max_in_flight_on(&self, suffix: &str) -> u64 {
        let mut paths = self.shared.path_in_flight.lock().unwrap();
        let mut most = 0;
        for (path, e) in paths.iter_mut() {
            if path.ends_with(suffix) {
                most = most.max(e.1);
                e.1 = e.0;
            }
        }
        most
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// The Prefect mock's data.
    pub fn prefect(&self) -> &prefect::PrefectMock {
        &self.shared.prefect
    }

    /// A configuration file for the Userflow connector pointing here.
    pub fn userflow_config(&self) -> serde_json::Value {
        serde_json::json!({"userflow_api_key": self.api_key(), "base_url": self.url()})
    }

    /// A configuration file for the Prefect connector pointing here.
    pub fn prefect_config(&self) -> serde_json::Value {
        serde_json::json!({"api_url": format!("{}{}", self.url(), prefect::PREFIX), "api_key": self.api_key()})
    }

    /// The Egnyte mock's data and state.
    pub fn egnyte(&self) -> &egnyte::EgnyteMock {
        &self.shared.egnyte
    }

    /// A configuration file for the Egnyte connector pointing here, with the
    /// OAuth refresh credentials the mock accepts.
    pub fn egnyte_config(&self) -> serde_json::Value {
        serde_json::json!({
            "api_token": self.api_key(),
            "domain": "playground",
            "base_url": self.url(),
            "refresh_token": egnyte::INITIAL_REFRESH_TOKEN,
            "client_id": egnyte::CLIENT_ID,
            "client_secret": egnyte::CLIENT_SECRET,
        })
    }

    /// The Fivetran api playground mock's data.
    pub fn fivetran(&self) -> &fivetran::FivetranMock {
        &self.shared.fivetran
    }

    /// Variables for the `rest` connector's shipped Fivetran specs: the base
    /// URL and every credential the mock accepts.
    pub fn rest_config(&self) -> serde_json::Value {
        serde_json::json!({
            "base_url": self.url(),
            "username": fivetran::BASIC_USER,
            "password": fivetran::BASIC_PASSWORD,
            "token": fivetran::BEARER_TOKEN,
            "api_key": fivetran::API_KEY,
            "client_id": fivetran::CLIENT_ID,
            "client_secret": fivetran::CLIENT_SECRET,
            "refresh_token": fivetran::REFRESH_TOKEN,
        })
    }

    /// The configuration of `connector` against this playground, if it mocks that API.
    pub fn config_for(&self, connector: &str) -> Option<serde_json::Value> {
        match connector {
            "userflow" => Some(self.userflow_config()),
            "prefect" => Some(self.prefect_config()),
            "egnyte" => Some(self.egnyte_config()),
            "csv_export" => Some(serde_json::json!({"url": format!("{}/export/csv", self.url())})),
            "rest" => Some(self.rest_config()),
            _ => None,
        }
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(s: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let n = s.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let _in_flight = InFlight::enter(&s, req.uri().path());
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let query = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let mreq = MockRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        headers: parts.headers,
        body,
    };

    if !s.opts.latency.is_zero() {
        tokio::time::sleep(s.opts.latency).await;
    }
    let scripted = s.faults.lock().unwrap().remove(&n).or_else(|| {
        let mut by_path = s.path_faults.lock().unwrap();
        let i = by_path
            .iter()
            .position(|(suffix, _)| mreq.path.ends_with(suffix.as_str()))?;
        Some(by_path.remove(i).1)
    });
    let fault = scripted.or_else(|| random_fault(&s));
    let mut malformed = false;
    let mut edit: Option<BodyEdit> = None;
    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            body,
        }) => {
            let mut r = json_response(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            );
            if let Some(ra) = retry_after {
                r.headers_mut()
                    .insert("retry-after", ra.parse().expect("valid header"));
            }
            return r;
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Malformed) => malformed = true,
        Some(Fault::Body(b)) => return json_response(StatusCode::OK, b),
        Some(Fault::Redirect(location)) => {
            let mut r = json_response(StatusCode::FOUND, "");
            r.headers_mut()
                .insert("location", location.parse().expect("valid header"));
            return r;
        }
        Some(Fault::Edit(f)) => edit = Some(f),
        None => {}
    }
    let resp = dispatch(&s, &mreq);
    if malformed || edit.is_some() {
        let status = resp.status();
        let full = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return match edit {
            Some(f) => json_response(status, f(&full)),
            None => json_response(StatusCode::OK, full.slice(..full.len() / 2)),
        };
    }
    resp
}

/// The mock a request is for, by its path.
fn dispatch(s: &Shared, mreq: &MockRequest) -> Resp {
    match mreq.path.strip_prefix(prefect::PREFIX) {
        Some(rest) => prefect::route(&s.prefect, &s.opts.api_key, mreq, rest),
        None if mreq.path.starts_with("/pubapi/") || mreq.path.starts_with("/puboauth/") => {
            egnyte::route(&s.egnyte, mreq)
        }
        None if mreq.path.trim_end_matches('/') == "/export/csv" => {
            csv_export::export_csv(&s.fivetran, mreq)
        }
        None if [
            "/pagination/",
            "/incremental/",
            "/export/",
            "/cursors/",
            "/auth/",
            "/oauth/",
            "/sdk/",
        ]
        .iter()
        .any(|p| mreq.path.starts_with(p)) =>
        {
            fivetran::route(&s.fivetran, mreq)
        }
        None => userflow::route(&s.userflow, &s.opts.api_key, mreq),
    }
}

fn random_fault(s: &Shared) -> Option<Fault> {
    if s.opts.fault_rate <= 0.0 {
        return None;
    }
    let mut rng = s.rng.lock().unwrap();
    if rng.unit() >= s.opts.fault_rate {
        return None;
    }
    Some(match rng.below(4) {
        0 | 1 => Fault::Status {
            status: 429,
            retry_after: Some("1".into()),
            body: r#"{"error":{"code":"rate_limited","message":"Too many requests"}}"#.into(),
        },
        2 => Fault::Status {
            status: 500,
            retry_after: None,
            body: r#"{"error":{"code":"internal_error","message":"Internal server error"}}"#.into(),
        },
        _ => Fault::Status {
            status: 503,
            retry_after: None,
            body: "Service Unavailable".into(),
        },
    })
}
