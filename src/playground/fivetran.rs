//! Mock of Fivetran's api playground (`fivetran-api-playground`, SOURCES.md
//! §4) and of the data of the Connector SDK examples that call no API.
//!
//! The playground's paths, parameters, envelopes and quirks: `/pagination/
//! {offset,page_number,next_page_url,keyset}` (the keyset scroll token
//! skips items sharing the boundary `updatedAt`, as the real one does),
//! `/incremental/{timestamp,step}`, `/cursors/companies` and
//! `/cursors/{id}/departments`, `/auth/*`, 400 on unexpected parameters.
//! Unlike the real one, its data is deterministic and tests change it
//! (edit a user, make timestamps collide), which the real one cannot do.
//!
//! Beyond the real playground:
//! - `/export/csv` writes RFC 4180 CSV (quoted fields, embedded newlines,
//!   CRLF, a UTF-8 BOM); `?rows=N` streams N generated rows without holding
//!   them (the 1 GB export measurement).
//! - `/oauth/token` (`refresh_token` in the form or the query string, and
//!   `client_credentials`) and `/oauth/users` behind its tokens.
//! - `/sdk/*`: the records of the SDK examples `hello`, `specified_types`,
//!   `unspecified_types`, `three_operations`, `records_with_no_created_at_
//!   timestamp`, `hashes`; `/sdk/events` (one event per hour, filtered by
//!   `updated_since`/`updated_until`) for priority-first sync; and
//!   `/sdk/pokemon`, PokeAPI's list (`offset`/`limit`, the next page's URL
//!   in `next`) of the `large_data_set` example.

use std::collections::HashSet;
use std::sync::Mutex;

use base64::Engine as _;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::wire::{json_response, MockRequest, Resp, SplitMix64};

pub const BASIC_USER: &str = "basic@example.com";
pub const BASIC_PASSWORD: &str = "basic-pass-0001";
pub const BEARER_TOKEN: &str = "3f1c2d4e-bearer-token-playground";
pub const API_KEY: &str = "9a8b7c6d-api-key-playground";
/// The same credentials log in to a session (one `--config` serves every auth spec).
pub const SESSION_USER: &str = BASIC_USER;
pub const SESSION_PASSWORD: &str = BASIC_PASSWORD;
pub const CLIENT_ID: &str = "etl-client";
pub const CLIENT_SECRET: &str = "etl-client-secret-0001";
pub const REFRESH_TOKEN: &str = "rt-fivetran-playground-0001";
/// `/sdk/events` has one event per hour from this long before now.
pub const EVENT_DAYS: i64 = 5;

pub(crate) const FIRST: [&str; 8] = [
    "Jane", "John", "Ada", "Grace", "Alan", "Zoë", "Seán", "Chloé",
];
pub(crate) const LAST: [&str; 8] = [
    "Roe", "Doe", "Lovelace", "Hopper", "Turing", "O'Brien", "Müller", "Smith",
];
pub(crate) const JOBS: [&str; 5] = [
    "Surveyor",
    "Engineer, \"civil\"",
    "Editor",
    "Chief Operating Officer",
    "Nurse",
];
const DEPARTMENTS: [&str; 4] = ["Engineering", "Marketing", "Sales", "Human Resources"];

/// The mock's data; tests change it between syncs.
pub struct FivetranMock {
    pub users: Mutex<Vec<Value>>,
    pub companies: Mutex<Vec<Value>>,
    pub departments: Mutex<Vec<Value>>,
    /// Access tokens `/oauth/token` issued.
    tokens: Mutex<HashSet<String>>,
    /// Token requests answered.
    pub token_requests: std::sync::atomic::AtomicU64,
    /// Requests to `/sdk/events`, with their parameters.
    pub event_requests: Mutex<Vec<(String, String)>>,
    /// `/sdk/events` starts this many hours before the mock started.
    now_hour: i64,
    /// `/sdk/events` answers 400 to windows starting before this UTC hour
    /// number (a source failing mid-backfill); `i64::MIN`: never.
    pub events_fail_before_hour: std::sync::atomic::AtomicI64,
    /// A request budget announced in `X-RateLimit-*` headers (see [`RateBudget`]).
    budget: Mutex<Option<RateBudget>>,
    /// Requests refused with 429 because the budget was spent.
    pub throttled: std::sync::atomic::AtomicU64,
}

/// `limit` requests per `window`, announced on every answer as
/// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until the
/// window ends); a request past the limit gets 429 without `Retry-After`,
/// as GitHub-style APIs answer.
#[derive(Debug)]
struct RateBudget {
    limit: u32,
    window: std::time::Duration,
    began: std::time::Instant,
    used: u32,
}

/// `%Y-%m-%dT%H:%M:%SZ` of UTC seconds.
pub fn ts(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .expect("valid time")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn parse_ts(s: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%SZ")
        .ok()
        .map(|t| t.and_utc().timestamp())
}

impl FivetranMock {
    /// Allow `limit` requests per `window` from now on, announced in headers.
    pub fn set_rate_budget(&self, limit: u32, window: std::time::Duration) {
        *self.budget.lock().unwrap() = Some(RateBudget {
            limit,
            window,
            began: std::time::Instant::now(),
            used: 0,
        });
    }

    /// Take a request from the budget: its headers, or the 429 that refuses it.
    fn spend(&self) -> Result<Vec<(&'static str, String)>, Resp> {
        let mut b = self.budget.lock().unwrap();
        let Some(b) = b.as_mut() else {
            return Ok(Vec::new());
        };
        if b.began.elapsed() >= b.window {
            b.began = std::time::Instant::now();
            b.used = 0;
        }
        let reset = (b.window - b.began.elapsed()).as_secs_f64().ceil() as u64;
        let headers = |remaining: u32| {
            vec![
                ("x-ratelimit-remaining", remaining.to_string()),
                ("x-ratelimit-reset", reset.to_string()),
            ]
        };
        if b.used >= b.limit {
            self.throttled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"detail": "API rate limit exceeded"}).to_string(),
            );
            for (k, v) in headers(0) {
                r.headers_mut()
                    .insert(k, v.parse().expect("a header value"));
            }
            return Err(r);
        }
        b.used += 1;
        Ok(headers(b.limit - b.used))
    }

    /// `n` users (the real playground has 200), 2 companies with 4 departments.
    pub fn generate(n: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed ^ 0xf1e7);
        let now = chrono::Utc::now().timestamp();
        let users = (0..n)
            .map(|i| {
                let created = now - (n - i) as i64 * 3600 - rng.below(3600) as i64;
                let updated = created + rng.below(3600) as i64;
                let (f, l) = (FIRST[rng.below(8) as usize], LAST[rng.below(8) as usize]);
                json!({
                    "id": rng.uuid(),
                    "name": format!("{f} {l}"),
                    "email": format!("{}.{}{}@example.net", f.to_lowercase(), l.to_lowercase(), i),
                    "address": format!("{} Main St\nSpringfield, IL {:05}", 10 + i, rng.below(99_999)),
                    "company": format!("{l}, {f} and Sons"),
                    "job": JOBS[rng.below(5) as usize],
                    "createdAt": ts(created),
                    "updatedAt": ts(updated),
                })
            })
            .collect();
        let mut companies = Vec::new();
        let mut departments = Vec::new();
        for c in 1..=2i64 {
            let created = now - (200 - c) * 3600;
            companies.push(json!({"company_id": c, "company_name": format!("Company {c}"), "createdAt": ts(created), "updatedAt": ts(created + 60)}));
            for (d, name) in DEPARTMENTS.iter().enumerate() {
                departments.push(json!({"department_id": d + 1, "company_id": c, "department_name": name, "createdAt": ts(created), "updatedAt": ts(created + 120 + d as i64)}));
            }
        }
        FivetranMock {
            users: Mutex::new(users),
            companies: Mutex::new(companies),
            departments: Mutex::new(departments),
            tokens: Mutex::new(HashSet::new()),
            token_requests: std::sync::atomic::AtomicU64::new(0),
            event_requests: Mutex::new(Vec::new()),
            now_hour: now / 3600,
            events_fail_before_hour: std::sync::atomic::AtomicI64::new(i64::MIN),
            budget: Mutex::new(None),
            throttled: Default::default(),
        }
    }

    /// Change user `i`: a new job and `updatedAt` (now, or the given one).
    pub fn edit_user(&self, i: usize, job: &str, updated_at: Option<&str>) {
        let mut users = self.users.lock().unwrap();
        let u = &mut users[i];
        u["job"] = json!(job);
        u["updatedAt"] =
            json!(updated_at.map_or_else(|| ts(chrono::Utc::now().timestamp()), String::from));
    }

    /// Every user, sorted by `updatedAt` then id (ground truth for tests).
    pub fn users_snapshot(&self) -> Vec<Value> {
        self.users.lock().unwrap().clone()
    }

    /// The hours `/sdk/events` covers: `[first, last]` as UTC hour numbers.
    pub fn event_hours(&self) -> (i64, i64) {
        (self.now_hour - EVENT_DAYS * 24, self.now_hour)
    }
}

fn bad(msg: &str) -> Resp {
    json_response(StatusCode::BAD_REQUEST, json!({"error": msg}).to_string())
}

fn ok(v: Value) -> Resp {
    json_response(StatusCode::OK, v.to_string())
}

fn check_params(req: &MockRequest, allowed: &[&str]) -> Result<(), Resp> {
    let unexpected: Vec<&str> = req
        .query
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !allowed.contains(k))
        .collect();
    if unexpected.is_empty() {
        Ok(())
    } else {
        Err(bad(&format!(
            "Unexpected query parameters: {}",
            unexpected.join(", ")
        )))
    }
}

fn since(req: &MockRequest, name: &str) -> Result<Option<String>, Resp> {
    match req.param(name) {
        None => Ok(None),
        Some(s) if !s.ends_with('Z') => Err(bad(&format!(
            "Invalid date format for '{name}'. Must end with 'Z' for UTC"
        ))),
        Some(s) if parse_ts(s).is_none() && s != "0001-01-01T00:00:00Z" => Err(bad(&format!(
            "Invalid date format for '{name}'. Use 'YYYY-MM-DDTHH:MM:SSZ'"
        ))),
        Some(s) => Ok(Some(s.to_string())),
    }
}

/// The users matching the common parameters, sorted as asked.
fn sorted(m: &FivetranMock, req: &MockRequest) -> Result<Vec<Value>, Resp> {
    let order_by = req.param("order_by").unwrap_or("updatedAt");
    if order_by != "updatedAt" && order_by != "createdAt" {
        return Err(bad(
            "Invalid value for 'order_by'. Use 'createdAt' or 'updatedAt'",
        ));
    }
    let order_type = req.param("order_type").unwrap_or("asc");
    if order_type != "asc" && order_type != "desc" {
        return Err(bad("Invalid value for 'order_type'. Use 'asc' or 'desc'"));
    }
    let since = since(req, "updated_since")?;
    let mut v: Vec<Value> = m
        .users
        .lock()
        .unwrap()
        .iter()
        .filter(|u| {
            since
                .as_deref()
                .is_none_or(|s| u["updatedAt"].as_str().unwrap_or("") >= s)
        })
        .cloned()
        .collect();
    v.sort_by(|a, b| a[order_by].as_str().cmp(&b[order_by].as_str()));
    if order_type == "desc" {
        v.reverse();
    }
    Ok(v)
}

fn int(
    req: &MockRequest,
    k: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, Resp> {
    match req.param(k) {
        None => Ok(default),
        Some(s) => match s.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(bad(&format!("Invalid value for '{k}'"))),
        },
    }
}

pub(crate) fn route(m: &FivetranMock, req: &MockRequest) -> Resp {
    let headers = match m.spend() {
        Ok(h) => h,
        Err(refused) => return refused,
    };
    let mut r = match route_inner(m, req) {
        Ok(r) | Err(r) => r,
    };
    for (k, v) in headers {
        r.headers_mut()
            .insert(k, v.parse().expect("a header value"));
    }
    r
}

/// Long by design: one arm per endpoint of Fivetran's api playground, in
/// the order of its reference, so the mock reads like the API.
fn route_inner(m: &FivetranMock, req: &MockRequest) -> Result<Resp, Resp> {
    let path = req.path.trim_end_matches('/');
    let common = ["order_by", "order_type", "updated_since"];
    Ok(match (&req.method, path) {
        (&Method::GET, "/pagination/offset") => {
            check_params(req, &[&common[..], &["limit", "offset"]].concat())?;
            let limit = int(req, "limit", 10, 1..=50)? as usize;
            let offset = int(req, "offset", 0, 0..=u64::MAX)? as usize;
            let all = sorted(m, req)?;
            let data: Vec<&Value> = all.iter().skip(offset).take(limit).collect();
            ok(json!({"data": data, "offset": offset, "limit": limit, "total": all.len()}))
        }
        (&Method::GET, "/pagination/page_number") => {
            check_params(req, &[&common[..], &["per_page", "page"]].concat())?;
            let per = int(req, "per_page", 10, 1..=50)? as usize;
            let page = int(req, "page", 1, 1..=u64::MAX)? as usize;
            let all = sorted(m, req)?;
            let data: Vec<&Value> = all.iter().skip((page - 1) * per).take(per).collect();
            ok(
                json!({"data": data, "page": page, "page_size": per, "total_pages": all.len().div_ceil(per), "total_items": all.len()}),
            )
        }
        (&Method::GET, "/pagination/next_page_url") => {
            check_params(req, &[&common[..], &["per_page", "page"]].concat())?;
            let per = int(req, "per_page", 10, 1..=50)? as usize;
            let page = int(req, "page", 1, 1..=u64::MAX)? as usize;
            let all = sorted(m, req)?;
            let data: Vec<&Value> = all.iter().skip((page - 1) * per).take(per).collect();
            let next = (page * per < all.len()).then(|| {
                let host = req
                    .headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1");
                let mut u = format!(
                    "http://{host}{path}?page={}&per_page={per}&order_by={}&order_type={}",
                    page + 1,
                    req.param("order_by").unwrap_or("updatedAt"),
                    req.param("order_type").unwrap_or("asc")
                );
                if let Some(s) = req.param("updated_since") {
                    u.push_str(&format!("&updated_since={s}"));
                }
                u
            });
            ok(
                json!({"data": data, "total_items": all.len(), "page": page, "per_page": per, "next_page_url": next}),
            )
        }
        (&Method::GET, "/pagination/keyset") => {
            check_params(req, &["scroll_param", "updated_since"])?;
            let scroll = req.param("scroll_param");
            if scroll.is_some() && req.param("updated_since").is_some() {
                return Err(bad("You can only use 'updated_since' in first request, subsequent requests should use only 'scroll_param'"));
            }
            let mut all = m.users.lock().unwrap().clone();
            all.sort_by(|a, b| a["updatedAt"].as_str().cmp(&b["updatedAt"].as_str()));
            let after: Vec<Value> = match scroll {
                Some(t) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(t)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| bad("Invalid scroll_param value"))?;
                    // Strictly after: items sharing the boundary are skipped (the real one's bug).
                    all.into_iter()
                        .filter(|u| u["updatedAt"].as_str().unwrap_or("") > decoded.as_str())
                        .collect()
                }
                None => {
                    let s = since(req, "updated_since")?;
                    all.into_iter()
                        .filter(|u| {
                            s.as_deref()
                                .is_none_or(|s| u["updatedAt"].as_str().unwrap_or("") >= s)
                        })
                        .collect()
                }
            };
            let data: Vec<&Value> = after.iter().take(50).collect();
            let scroll = (after.len() > 50).then(|| {
                base64::engine::general_purpose::STANDARD.encode(
                    data.last().expect("50 items")["updatedAt"]
                        .as_str()
                        .unwrap_or(""),
                )
            });
            ok(json!({"data": data, "scroll_param": scroll}))
        }
        (&Method::GET, "/incremental/timestamp") => {
            check_params(req, &["since"])?;
            let s = since(req, "since")?;
            let mut all: Vec<Value> = m
                .users
                .lock()
                .unwrap()
                .iter()
                .filter(|u| {
                    s.as_deref()
                        .is_none_or(|s| u["updatedAt"].as_str().unwrap_or("") >= s)
                })
                .cloned()
                .collect();
            all.sort_by(|a, b| a["updatedAt"].as_str().cmp(&b["updatedAt"].as_str()));
            ok(json!({"data": all}))
        }
        (&Method::GET, "/incremental/step") => {
            check_params(req, &["start_id", "end_id"])?;
            let start = int(req, "start_id", 0, 1..=u64::MAX)?;
            let end = int(req, "end_id", 0, start..=u64::MAX)?;
            let users = m.users.lock().unwrap();
            let data: Vec<Value> = (start..=end.min(users.len() as u64))
                .map(|i| {
                    let mut u = users[i as usize - 1].clone();
                    u["id"] = json!(i.to_string());
                    u
                })
                .collect();
            ok(json!({"data": data}))
        }
        (&Method::GET, "/cursors/companies") => {
            check_params(req, &common)?;
            let s = since(req, "updated_since")?;
            let mut data: Vec<Value> = m
                .companies
                .lock()
                .unwrap()
                .iter()
                .filter(|c| {
                    s.as_deref()
                        .is_none_or(|s| c["updatedAt"].as_str().unwrap_or("") >= s)
                })
                .cloned()
                .collect();
            data.sort_by(|a, b| a["updatedAt"].as_str().cmp(&b["updatedAt"].as_str()));
            ok(json!({"data": data, "total_items": data.len()}))
        }
        (&Method::GET, p) if p.starts_with("/cursors/") && p.ends_with("/departments") => {
            check_params(req, &common)?;
            let id = &p["/cursors/".len()..p.len() - "/departments".len()];
            let Ok(id) = id.parse::<i64>() else {
                return Err(bad(
                    "Invalid value for 'company_id'. 'company_id' must be an integer",
                ));
            };
            if !m
                .companies
                .lock()
                .unwrap()
                .iter()
                .any(|c| c["company_id"] == id)
            {
                return Err(json_response(
                    StatusCode::NOT_FOUND,
                    json!({"error": format!("company_id '{id}' not found")}).to_string(),
                ));
            }
            let s = since(req, "updated_since")?;
            let mut data: Vec<Value> = m
                .departments
                .lock()
                .unwrap()
                .iter()
                .filter(|d| {
                    d["company_id"] == id
                        && s.as_deref()
                            .is_none_or(|s| d["updatedAt"].as_str().unwrap_or("") >= s)
                })
                .cloned()
                .collect();
            data.sort_by(|a, b| a["updatedAt"].as_str().cmp(&b["updatedAt"].as_str()));
            ok(json!({"data": data, "total_items": data.len()}))
        }
        (&Method::GET, "/auth/http_basic") => {
            let want = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{BASIC_USER}:{BASIC_PASSWORD}"))
            );
            auth_data(m, req, &want)?
        }
        (&Method::GET, "/auth/http_bearer") => {
            auth_data(m, req, &format!("Bearer {BEARER_TOKEN}"))?
        }
        (&Method::GET, "/auth/api_key") => auth_data(m, req, &format!("apiKey {API_KEY}"))?,
        (&Method::POST, "/auth/session_token/login") => {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let (u, p) = (body["username"].as_str(), body["password"].as_str());
            match (u, p) {
                (Some(u), Some(p)) if u == SESSION_USER && p == SESSION_PASSWORD => {
                    let exp = chrono::Utc::now().timestamp() + 3600;
                    let token =
                        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}:{exp}"));
                    ok(json!({"token": token, "expires_in": 3600}))
                }
                (Some(_), Some(_)) => json_response(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "Invalid username or password"}).to_string(),
                ),
                _ => bad("Username and password are required"),
            }
        }
        (&Method::GET, "/auth/session_token/data") => {
            let token = req
                .headers
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let token = token.strip_prefix("Token ").unwrap_or(token);
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded
                .as_deref()
                .map(|d| d.rsplitn(3, ':').collect::<Vec<_>>())
            {
                Some(parts)
                    if parts.len() == 3
                        && parts[2] == SESSION_USER
                        && parts[1] == SESSION_PASSWORD =>
                {
                    if parts[0].parse::<i64>().unwrap_or(0) < chrono::Utc::now().timestamp() {
                        json_response(
                            StatusCode::UNAUTHORIZED,
                            json!({"error": "Token has expired"}).to_string(),
                        )
                    } else {
                        first_twenty(m)
                    }
                }
                _ if token.is_empty() => bad("Token is missing"),
                _ => json_response(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "Invalid Token"}).to_string(),
                ),
            }
        }
        (&Method::POST, "/oauth/token") => oauth_token(m, req),
        (&Method::GET, "/oauth/users") => {
            let token = req.bearer().unwrap_or("");
            if !m.tokens.lock().unwrap().contains(token) {
                return Err(json_response(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "invalid_token"}).to_string(),
                ));
            }
            first_twenty(m)
        }
        (&Method::GET, p) if p.starts_with("/sdk/") => sdk(m, req, &p[5..])?,
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "Not Found"}).to_string(),
        ),
    })
}

/// Entries of `/sdk/pokemon` (PokeAPI lists 1302).
pub const POKEMON: usize = 1302;

/// The name of entry `i` of `/sdk/pokemon` (distinct for every `i`).
pub fn pokemon_name(i: usize) -> String {
    const SYL: [&str; 8] = ["pi", "ka", "chu", "bul", "ba", "saur", "char", "mander"];
    format!("{}{}-{}", SYL[i % 8], SYL[(i / 8) % 8], i + 1)
}

fn first_twenty(m: &FivetranMock) -> Resp {
    let users = m.users.lock().unwrap();
    ok(json!({"data": users.iter().take(20).collect::<Vec<_>>()}))
}

fn auth_data(m: &FivetranMock, req: &MockRequest, want: &str) -> Result<Resp, Resp> {
    match req
        .headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
    {
        None => Err(html_401("Authorization header is missing")),
        Some(h) if h == want => Ok(first_twenty(m)),
        Some(_) => Err(html_401("Invalid API key or format")),
    }
}

/// Flask's `abort(401)` page.
fn html_401(msg: &str) -> Resp {
    hyper::Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header("content-type", "text/html; charset=utf-8")
        .body(http_body_util::Full::new(Bytes::from(format!(
            "<!doctype html>\n<html lang=en>\n<title>401 Unauthorized</title>\n<h1>Unauthorized</h1>\n<p>{msg}</p>\n"
        ))))
        .expect("valid response")
}

fn oauth_token(m: &FivetranMock, req: &MockRequest) -> Resp {
    m.token_requests
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // Parameters in the form body or, as HubSpot's example sends them, the query string.
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    params.extend(req.query.iter().cloned());
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    };
    let granted = match get("grant_type") {
        Some("refresh_token") => {
            get("refresh_token") == Some(REFRESH_TOKEN)
                && get("client_id").is_none_or(|c| c == CLIENT_ID)
        }
        Some("client_credentials") => {
            get("client_id") == Some(CLIENT_ID) && get("client_secret") == Some(CLIENT_SECRET)
        }
        _ => return bad("unsupported_grant_type"),
    };
    if !granted {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant"}).to_string(),
        );
    }
    let mut tokens = m.tokens.lock().unwrap();
    let token = format!("at-{}", tokens.len() + 1);
    tokens.insert(token.clone());
    ok(json!({"access_token": token, "token_type": "bearer", "expires_in": 3600}))
}

/// The SDK example connectors' endpoints. Long by design: one arm per
/// endpoint, as in the examples' own mock servers.
fn sdk(m: &FivetranMock, req: &MockRequest, what: &str) -> Result<Resp, Resp> {
    let ids: Vec<String> = (0..3)
        .map(|i| format!("00000000-0000-4000-8000-00000000000{i}"))
        .collect();
    let specified = json!({
        "_bool": true, "_short": 15, "_long": 132353453453635i64, "_dec": "105.34", "_float": 10.4,
        "_double": 1e-4, "_ndate": "2007-12-03", "_ndatetime": "2007-12-03T10:15:30",
        "_utc": "2007-12-03T10:15:30.123Z",
        "_binary": base64::engine::general_purpose::STANDARD.encode([0u8, 1, 2, 3]),
        "_xml": "<tag>This is XML</tag>", "_str": "This is a string", "_json": {"a": 10}, "_null": null
    });
    Ok(match what {
        "hello" => ok(json!([{"message": "hello, world!"}])),
        "specified" => ok(json!({"data": [specified]})),
        "unspecified" => {
            let mut r = specified;
            r["id"] = json!(1);
            ok(json!({"data": [r]}))
        }
        "three" => ok(
            json!({"data": (0..3).map(|i| json!({"id": ids[i], "val1": ids[i], "val2": i})).collect::<Vec<_>>()}),
        ),
        "three/updates" => ok(json!({"data": [{"id": ids[1], "val1": "abc"}]})),
        "three/deletes" => ok(json!({"data": [{"id": ids[2]}]})),
        "no_created_at" => ok(json!({"data": [
            {"id": 123, "updated_at": "2007-12-03T10:15:30Z", "first_name": "John", "last_name": "Doe", "designation": "Manager"},
            {"id": 123, "updated_at": "2008-01-04T23:44:21Z", "first_name": "John", "last_name": "Doe", "designation": "Senior Manager"},
            {"id": 456, "updated_at": "2008-11-12T00:00:20Z", "first_name": "Jane", "last_name": "Dalton", "designation": "VP"}
        ]})),
        "hashes" => ok(json!({"data": [
            {"email": "john.doe@example.com", "first_name": "John", "last_name": "Doe", "updated_at": "2007-12-03T10:15:30Z"},
            {"email": "john.doe@example.com", "first_name": "John", "last_name": "Doe", "updated_at": "2008-02-13T03:30:50Z"},
            {"email": null, "first_name": "John", "last_name": "Doe", "updated_at": "2008-02-13T03:30:50Z"},
            {"email": null, "first_name": "Joe", "last_name": "Smith", "updated_at": "2014-05-10T00:00:30Z"},
            {"first_name": "Jane", "last_name": "Dalton", "updated_at": null}
        ]})),
        "bad_rows" => ok(json!({"data": [
            {"id": "1", "amount": "10.50"},
            {"id": "2", "amount": "not a number"},
            {"id": "3", "amount": "7"}
        ]})),
        "events" => {
            check_params(req, &["updated_since", "updated_until"])?;
            m.event_requests.lock().unwrap().push((
                req.param("updated_since").unwrap_or("").to_string(),
                req.param("updated_until").unwrap_or("").to_string(),
            ));
            let from = since(req, "updated_since")?
                .and_then(|s| parse_ts(&s))
                .unwrap_or(i64::MIN);
            let until = since(req, "updated_until")?
                .and_then(|s| parse_ts(&s))
                .unwrap_or(i64::MAX);
            if from.div_euclid(3600)
                < m.events_fail_before_hour
                    .load(std::sync::atomic::Ordering::SeqCst)
            {
                return Err(bad("events before this time are not available right now"));
            }
            let (first, last) = m.event_hours();
            let data: Vec<Value> = (first..=last)
                .map(|h| h * 3600)
                .filter(|t| *t >= from && *t < until)
                .map(|t| json!({"id": t / 3600, "updated_at": ts(t), "created_at": ts(t), "kind": "hourly"}))
                .collect();
            ok(json!({"data": data}))
        }
        "pokemon" => {
            // PokeAPI's list: `offset`/`limit`, the next page's whole URL in `next`.
            check_params(req, &["offset", "limit"])?;
            let num = |k: &str, d: usize| -> Result<usize, Resp> {
                req.param(k).map_or(Ok(d), |v| {
                    v.parse().map_err(|_| bad(&format!("{k} must be a number")))
                })
            };
            let (offset, limit) = (num("offset", 0)?, num("limit", 20)?);
            let end = (offset + limit).min(POKEMON);
            let host = req
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            let page = |o: usize| {
                json!(format!(
                    "http://{host}/sdk/pokemon?offset={o}&limit={limit}"
                ))
            };
            let results: Vec<Value> = (offset.min(end)..end)
                .map(|i| json!({"name": pokemon_name(i), "url": format!("http://{host}/sdk/pokemon/{}/", i + 1)}))
                .collect();
            ok(json!({
                "count": POKEMON,
                "next": if end < POKEMON { page(end) } else { Value::Null },
                "previous": if offset > 0 { page(offset.saturating_sub(limit)) } else { Value::Null },
                "results": results,
            }))
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "Not Found"}).to_string(),
        ),
    })
}
