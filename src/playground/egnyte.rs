//! Mock of the Egnyte Public API (SOURCES.md §3): SCIM-style
//! `GET /pubapi/v2/users` and `/pubapi/v2/groups` (`startIndex` from 1,
//! `count` ≤ 100, `resources`, `totalResults`), `GET /pubapi/v2/groups/{id}`
//! with members, `GET /pubapi/v1/notes` (`offset`, `count`, `start_time`,
//! `end_time` by creation day; `notes`, `total_results`) and
//! `/pubapi/v1/bookmarks` (`bookmarks`, `total_count`), and the token
//! endpoint `POST /puboauth/token` (`grant_type=refresh_token`: a new access
//! token and a rotated refresh token; the old one stops working).
//!
//! Mashery's throttling per access token: more than `qps` calls in one
//! second → 403 `X-Mashery-Error-Code: ERR_403_DEVELOPER_OVER_QPS`,
//! `Retry-After: 1`; more than `daily_quota` successful calls in a UTC day →
//! 403 `ERR_403_DEVELOPER_OVER_RATE` with `Retry-After` until midnight UTC.
//! Unknown or expired tokens → 401 "Developer Inactive".

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::wire::{json_response, MockRequest, Resp, SplitMix64};

/// The refresh token the playground starts with.
pub const INITIAL_REFRESH_TOKEN: &str = "rt_playground_0";
pub const CLIENT_ID: &str = "playground-client";
pub const CLIENT_SECRET: &str = "playground-client-secret";

/// How the Egnyte mock behaves.
#[derive(Debug, Clone)]
pub struct EgnyteOptions {
    pub users: usize,
    pub groups: usize,
    pub notes: usize,
    pub bookmarks: usize,
    /// Calls per second per token before OVER_QPS (`None`: no limit).
    pub qps: Option<u32>,
    /// Successful calls per token per day before OVER_RATE (`None`: no limit).
    pub daily_quota: Option<u64>,
    /// Lifetime of access tokens (`None`: they never expire, as Egnyte's).
    pub token_ttl: Option<Duration>,
}

impl Default for EgnyteOptions {
    fn default() -> Self {
        EgnyteOptions {
            users: 1_000,
            groups: 25,
            notes: 400,
            bookmarks: 60,
            qps: Some(2),
            daily_quota: None,
            token_ttl: None,
        }
    }
}

fn egnyte_time(micros: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(micros).expect("valid time");
    t.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

/// Tokens and throttling counters.
#[derive(Debug)]
struct Auth {
    /// Access token → expiry.
    access: HashMap<String, Option<Instant>>,
    refresh: String,
    issued: u64,
    /// (token, second) → calls in that second.
    per_second: HashMap<(String, u64), u32>,
    /// (token, day) → successful calls that day.
    per_day: HashMap<(String, u64), u64>,
}

/// The mock's data and state; tests change the collections between syncs.
pub struct EgnyteMock {
    pub opts: EgnyteOptions,
    /// By id (ascending, the list order).
    pub users: Mutex<BTreeMap<i64, Value>>,
    /// Group details by id.
    pub groups: Mutex<BTreeMap<String, Value>>,
    /// By (creation time, id).
    pub notes: Mutex<BTreeMap<(i64, String), Value>>,
    pub bookmarks: Mutex<BTreeMap<i64, Value>>,
    auth: Mutex<Auth>,
    /// Requests answered with a throttling 403, by code.
    over_qps: std::sync::atomic::AtomicU64,
    over_rate: std::sync::atomic::AtomicU64,
    /// Start times (since the mock began) of the calls that were served.
    pub served_at: Mutex<Vec<Duration>>,
    started: Instant,
}

impl EgnyteMock {
    /// The whole fixture (users, groups, notes, bookmarks). Long by design:
    /// one pass of one seeded generator, so a seed always gives the same data.
    pub fn generate(opts: EgnyteOptions, api_key: &str, seed: u64) -> Self {
        let mut rng = SplitMix64(seed ^ 0xe9);
        let now = chrono::Utc::now().timestamp_micros();
        let day = 86_400_000_000i64;
        let mut users = BTreeMap::new();
        let first = ["Jane", "Anna", "Omar", "Li", "Sven", "Zoë", "José", "Priya"];
        let last = [
            "Doe", "Smith", "Haddad", "Wei", "Berg", "Müller", "García", "Rao",
        ];
        for i in 0..opts.users {
            let id = 9_967_960_066 + i as i64 * 7 + rng.below(7) as i64;
            let (f, l) = (first[rng.below(8) as usize], last[rng.below(8) as usize]);
            let user_name = format!(
                "{}{}{i}",
                f.to_lowercase().chars().next().unwrap(),
                l.to_lowercase()
            );
            let auth = ["egnyte", "sso", "ad"][rng.below(3) as usize];
            let user_type = ["admin", "power", "standard"][rng.below(3) as usize];
            users.insert(
                id,
                json!({
                    "id": id,
                    "userName": user_name,
                    "externalId": format!("S-1-5-21-{}", rng.next_u64() % 10_000_000_000),
                    "email": format!("{user_name}@example.com"),
                    "name": {"formatted": format!("{f} {l}"), "familyName": l, "givenName": f},
                    "active": rng.below(10) > 0,
                    "locked": rng.below(20) == 0,
                    "emailChangePending": false,
                    "authType": auth,
                    "userType": user_type,
                    "role": if rng.below(2) == 0 { Value::Null } else { json!("Default") },
                    "idpUserId": if auth == "sso" { json!(user_name) } else { Value::Null },
                    "userPrincipalName": if auth == "ad" { json!(format!("{user_name}@corp.example.com")) } else { Value::Null },
                    "expiryDate": null,
                    "deleteOnExpiry": null,
                }),
            );
        }
        let user_list: Vec<(i64, String, String)> = users
            .values()
            .map(|u| {
                (
                    u["id"].as_i64().unwrap(),
                    u["userName"].as_str().unwrap().to_string(),
                    u["name"]["formatted"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut groups = BTreeMap::new();
        for g in 0..opts.groups {
            let id = rng.uuid();
            let n = if user_list.is_empty() {
                0
            } else {
                rng.below(12) as usize
            };
            let members: Vec<Value> = (0..n)
                .map(|_| {
                    let (uid, un, name) = &user_list[rng.below(user_list.len() as u64) as usize];
                    json!({"username": un, "value": uid, "display": name})
                })
                .collect();
            groups.insert(
                id.clone(),
                json!({"schemas": ["urn:scim:schemas:core:1.0"], "id": id,
                       "displayName": format!("Team {g:02}"), "members": members}),
            );
        }
        let mut notes = BTreeMap::new();
        for i in 0..opts.notes {
            let created = now - rng.below(400) as i64 * day - rng.below(day as u64) as i64;
            let (_, un, name) = user_list
                .get(rng.below(user_list.len().max(1) as u64) as usize)
                .cloned()
                .unwrap_or((0, "admin".into(), "Admin".into()));
            let id = rng.uuid();
            notes.insert(
                (created, id.clone()),
                json!({"id": id, "message": format!("Please review version {i} ✓"), "username": un,
                       "can_delete": rng.below(2) == 0, "creation_time": egnyte_time(created),
                       "formatted_name": name, "file_path": format!("/Shared/Documents/report-{i}.docx"),
                       "file_id": rng.uuid(), "group_id": rng.uuid()}),
            );
        }
        let mut bookmarks = BTreeMap::new();
        for i in 0..opts.bookmarks {
            let id = 5_468 + i as i64 * 3;
            let created = now - rng.below(900) as i64 * day;
            bookmarks.insert(
                id,
                json!({"id": id, "path": format!("/Shared/Projects/P{i:03}"), "folder_id": rng.uuid(),
                       "creation_date": egnyte_time(created)}),
            );
        }
        let mut access = HashMap::new();
        access.insert(
            api_key.to_string(),
            opts.token_ttl.map(|t| Instant::now() + t),
        );
        EgnyteMock {
            opts,
            users: Mutex::new(users),
            groups: Mutex::new(groups),
            notes: Mutex::new(notes),
            bookmarks: Mutex::new(bookmarks),
            auth: Mutex::new(Auth {
                access,
                refresh: INITIAL_REFRESH_TOKEN.to_string(),
                issued: 0,
                per_second: HashMap::new(),
                per_day: HashMap::new(),
            }),
            over_qps: Default::default(),
            over_rate: Default::default(),
            served_at: Mutex::new(Vec::new()),
            started: Instant::now(),
        }
    }

    /// Calls refused with `ERR_403_DEVELOPER_OVER_QPS` so far.
    pub fn over_qps(&self) -> u64 {
        self.over_qps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Calls refused with `ERR_403_DEVELOPER_OVER_RATE` so far.
    pub fn over_rate(&self) -> u64 {
        self.over_rate.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The refresh token that works now (rotated by every refresh).
    pub fn refresh_token(&self) -> String {
        self.auth.lock().unwrap().refresh.clone()
    }

    /// Access tokens issued by refreshes so far.
    pub fn refreshes(&self) -> u64 {
        self.auth.lock().unwrap().issued
    }

    /// Expire every access token now (the next call is refused).
    pub fn expire_tokens(&self) {
        let mut a = self.auth.lock().unwrap();
        for e in a.access.values_mut() {
            *e = Some(Instant::now());
        }
    }

    /// Use up today's quota of every token (`daily_quota` must be set).
    pub fn exhaust_quota(&self) {
        let Some(q) = self.opts.daily_quota else {
            return;
        };
        let mut a = self.auth.lock().unwrap();
        let day = unix_secs() / 86_400;
        let tokens: Vec<String> = a.access.keys().cloned().collect();
        for t in tokens {
            a.per_day.insert((t, day), q);
        }
    }

    /// Give every token a new day's quota.
    pub fn reset_quota(&self) {
        self.auth.lock().unwrap().per_day.clear();
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn scim_error(status: StatusCode, msg: &str) -> Resp {
    json_response(
        status,
        json!({"Errors": [{"description": msg, "code": status.as_u16().to_string()}]}).to_string(),
    )
}

fn mashery(code: &str, html: &str, retry_after: u64) -> Resp {
    let mut r = json_response(StatusCode::FORBIDDEN, format!("<h1>{html}</h1>"));
    let h = r.headers_mut();
    h.insert("x-mashery-error-code", code.parse().expect("header"));
    h.insert(
        "retry-after",
        retry_after.to_string().parse().expect("header"),
    );
    h.insert("content-type", "text/html".parse().expect("header"));
    r
}

fn param(req: &MockRequest, k: &str, default: i64) -> Result<i64, Resp> {
    match req.param(k) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| {
            scim_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid value for {k}: {v}"),
            )
        }),
    }
}

pub(crate) fn route(m: &EgnyteMock, req: &MockRequest) -> Resp {
    if req.path == "/puboauth/token" && req.method == Method::POST {
        return token(m, req);
    }
    // Authentication and Mashery's throttling, per access token.
    let Some(token) = req.bearer().map(str::to_string) else {
        return json_response(StatusCode::UNAUTHORIZED, "<h1>Developer Inactive</h1>");
    };
    {
        let mut a = m.auth.lock().unwrap();
        match a.access.get(&token) {
            Some(None) => {}
            Some(Some(exp)) if *exp > Instant::now() => {}
            _ => return json_response(StatusCode::UNAUTHORIZED, "<h1>Developer Inactive</h1>"),
        }
        let now = unix_secs();
        if let Some(q) = m.opts.daily_quota {
            let used = a
                .per_day
                .get(&(token.clone(), now / 86_400))
                .copied()
                .unwrap_or(0);
            if used >= q {
                m.over_rate
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return mashery(
                    "ERR_403_DEVELOPER_OVER_RATE",
                    "Developer Over Rate",
                    86_400 - now % 86_400,
                );
            }
        }
        if let Some(qps) = m.opts.qps {
            let n = a.per_second.entry((token.clone(), now)).or_insert(0);
            *n += 1;
            if *n > qps {
                m.over_qps
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return mashery("ERR_403_DEVELOPER_OVER_QPS", "Developer Over Qps", 1);
            }
            a.per_second.retain(|(_, sec), _| *sec + 2 >= now);
        }
        *a.per_day.entry((token, now / 86_400)).or_insert(0) += 1;
        m.served_at.lock().unwrap().push(m.started.elapsed());
    }
    if req.method != Method::GET {
        return scim_error(StatusCode::METHOD_NOT_ALLOWED, "Only GET is mocked");
    }
    let path = req.path.trim_end_matches('/');
    match path {
        "/pubapi/v2/users" => scim_list(req, m.users.lock().unwrap().values()),
        "/pubapi/v2/groups" => {
            let g = m.groups.lock().unwrap();
            let items: Vec<Value> = g
                .values()
                .map(|d| json!({"id": d["id"], "displayName": d["displayName"]}))
                .collect();
            scim_list(req, items.iter())
        }
        "/pubapi/v1/notes" => notes(m, req),
        "/pubapi/v1/bookmarks" => {
            let b = m.bookmarks.lock().unwrap();
            offset_list(req, "bookmarks", "total_count", b.values())
        }
        p => match p.strip_prefix("/pubapi/v2/groups/") {
            Some(id) => match m.groups.lock().unwrap().get(id) {
                Some(d) => json_response(StatusCode::OK, d.to_string()),
                None => scim_error(StatusCode::NOT_FOUND, &format!("Group {id} not found.")),
            },
            None => scim_error(StatusCode::NOT_FOUND, &format!("No endpoint {p}")),
        },
    }
}

fn scim_list<'a>(req: &MockRequest, items: impl ExactSizeIterator<Item = &'a Value>) -> Resp {
    let (start, count) = match (param(req, "startIndex", 1), param(req, "count", 100)) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if start < 1 {
        return scim_error(StatusCode::BAD_REQUEST, "startIndex must be 1 or more");
    }
    let count = count.clamp(0, 100) as usize;
    let total = items.len();
    let page: Vec<&Value> = items.skip(start as usize - 1).take(count).collect();
    json_response(
        StatusCode::OK,
        json!({"schemas": ["urn:scim:schemas:core:1.0"], "totalResults": total,
               "itemsPerPage": page.len(), "startIndex": start, "resources": page})
        .to_string(),
    )
}

fn offset_list<'a>(
    req: &MockRequest,
    key: &str,
    total_key: &str,
    items: impl Iterator<Item = &'a Value>,
) -> Resp {
    let (offset, count) = match (param(req, "offset", 0), param(req, "count", 100)) {
        (Ok(o), Ok(c)) => (o, c),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if offset < 0 || count < 0 {
        return scim_error(
            StatusCode::BAD_REQUEST,
            "offset and count must not be negative",
        );
    }
    let all: Vec<&Value> = items.collect();
    let page: Vec<&Value> = all
        .iter()
        .skip(offset as usize)
        .take(count as usize)
        .copied()
        .collect();
    json_response(
        StatusCode::OK,
        json!({key: page, total_key: all.len(), "offset": offset, "count": page.len()}).to_string(),
    )
}

fn notes(m: &EgnyteMock, req: &MockRequest) -> Resp {
    let day = |k: &str| -> Result<Option<i64>, Resp> {
        match req.param(k) {
            None => Ok(None),
            Some(v) => chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(|d| Some(d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros()))
                .map_err(|_| {
                    scim_error(
                        StatusCode::BAD_REQUEST,
                        &format!("{k} must be YYYY-MM-DD, got {v}"),
                    )
                }),
        }
    };
    let (from, to) = match (day("start_time"), day("end_time")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let n = m.notes.lock().unwrap();
    let items = n
        .iter()
        .filter(|((created, _), _)| {
            from.is_none_or(|f| *created >= f) && to.is_none_or(|t| *created < t)
        })
        .map(|(_, v)| v);
    offset_list(req, "notes", "total_results", items)
}

fn token(m: &EgnyteMock, req: &MockRequest) -> Resp {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    let bad = |msg: &str| {
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": msg}).to_string(),
        )
    };
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return bad("only grant_type=refresh_token is mocked");
    }
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client"}).to_string(),
        );
    }
    let mut a = m.auth.lock().unwrap();
    if form.get("refresh_token") != Some(&a.refresh) {
        return bad("the refresh token is not valid (was it rotated?)");
    }
    a.issued += 1;
    let access = format!(
        "at_playground_{}_{:016x}",
        a.issued,
        SplitMix64(a.issued).next_u64()
    );
    a.refresh = format!(
        "rt_playground_{}_{:016x}",
        a.issued,
        SplitMix64(!a.issued).next_u64()
    );
    let ttl = m.opts.token_ttl;
    a.access
        .insert(access.clone(), ttl.map(|t| Instant::now() + t));
    json_response(
        StatusCode::OK,
        json!({"access_token": access, "token_type": "bearer",
               "expires_in": ttl.map_or(-1, |t| t.as_secs() as i64), "refresh_token": a.refresh})
        .to_string(),
    )
}
