//! Mock of Userflow's Users API (SOURCES.md §1): `GET /users` list objects
//! with `limit` (1..100) and `starting_after`, `GET/POST/DELETE /users/{id}`,
//! Bearer auth, errors shaped `{"error": {"code", "message"}}`.
//!
//! Users are listed in id order. An unknown `starting_after` is a 400
//! `invalid_params`, as on the real service.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::wire::{json_response, MockRequest, Resp, SplitMix64};

const FIRST: [&str; 16] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus",
    "Radia", "Tony", "Zoë", "Seán", "Björn", "Chloé",
];
const LAST: [&str; 12] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
    "Wirth", "O'Brien", "Perlman",
];
const PLANS: [&str; 3] = ["free", "pro", "enterprise"];

/// A Userflow user as the mock stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub attributes: Map<String, Value>,
    pub created_at: String,
}

impl User {
    /// The user object as the API returns it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "user",
            "attributes": self.attributes,
            "created_at": self.created_at,
            "groups": null,
            "memberships": null,
        })
    }
}

/// A user with its API JSON serialised once (lists are served from it).
struct Stored {
    user: User,
    json: String,
}

impl Stored {
    fn new(user: User) -> Self {
        let json = user.to_json().to_string();
        Stored { user, json }
    }
}

/// The mock's data.
pub struct UserflowMock {
    users: Mutex<BTreeMap<String, Stored>>,
    clock: Mutex<i64>,
}

fn iso_millis(secs: i64, millis: i64) -> String {
    let t =
        chrono::DateTime::from_timestamp(secs, (millis * 1_000_000) as u32).expect("valid time");
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl UserflowMock {
    /// `n` users from `seed`.
    pub fn generate(n: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let base = 1_672_531_200; // 2023-01-01T00:00:00Z
        let mut users = BTreeMap::new();
        for i in 0..n {
            let id = rng.uuid();
            let first = FIRST[rng.below(FIRST.len() as u64) as usize];
            let last = LAST[rng.below(LAST.len() as u64) as usize];
            let created = base + (i as i64) * 97 + rng.below(90) as i64;
            let mut attributes = Map::new();
            attributes.insert("name".into(), json!(format!("{first} {last}")));
            attributes.insert(
                "email".into(),
                json!(format!(
                    "{}.{}{}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase().replace('\'', ""),
                    i
                )),
            );
            if rng.below(10) != 0 {
                attributes.insert(
                    "signed_up_at".into(),
                    json!(iso_millis(created - 1, rng.below(1000) as i64)),
                );
            }
            attributes.insert("plan".into(), json!(PLANS[rng.below(3) as usize]));
            if rng.below(4) == 0 {
                attributes.insert("note".into(), json!("said \"hi\"\n\ttwice"));
            }
            let created_at = iso_millis(created, rng.below(1000) as i64);
            users.insert(
                id.clone(),
                Stored::new(User {
                    id,
                    attributes,
                    created_at,
                }),
            );
        }
        UserflowMock {
            users: Mutex::new(users),
            clock: Mutex::new(base + n as i64 * 97 + 1000),
        }
    }

    /// Every user in list order (the ground truth tests compare with).
    pub fn users(&self) -> Vec<User> {
        self.users
            .lock()
            .unwrap()
            .values()
            .map(|s| s.user.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.users.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Create or update a user, merging attributes (a null attribute removes it), like `POST /users`.
    pub fn upsert(&self, id: &str, attributes: Map<String, Value>) -> User {
        let mut users = self.users.lock().unwrap();
        let created_at = {
            let mut c = self.clock.lock().unwrap();
            *c += 1;
            iso_millis(*c, 0)
        };
        let s = users.entry(id.to_string()).or_insert_with(|| {
            Stored::new(User {
                id: id.to_string(),
                attributes: Map::new(),
                created_at,
            })
        });
        for (k, v) in attributes {
            if v.is_null() {
                s.user.attributes.remove(&k);
            } else {
                s.user.attributes.insert(k, v);
            }
        }
        *s = Stored::new(s.user.clone());
        s.user.clone()
    }

    /// Delete a user; true if it existed.
    pub fn delete(&self, id: &str) -> bool {
        self.users.lock().unwrap().remove(id).is_some()
    }

    fn list(&self, req: &MockRequest) -> Resp {
        let limit = match req.param("limit") {
            None => 20,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_params",
                        &format!("limit: must be an integer between 1 and 100, got '{l}'"),
                    )
                }
            },
        };
        let users = self.users.lock().unwrap();
        let email = req.param("email");
        let iter: Box<dyn Iterator<Item = &Stored>> = match req.param("starting_after") {
            None => Box::new(users.values()),
            Some(after) => {
                if !users.contains_key(after) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_params",
                        &format!("starting_after: User with id '{after}' not found"),
                    );
                }
                Box::new(
                    users
                        .range::<str, _>((
                            std::ops::Bound::Excluded(after),
                            std::ops::Bound::Unbounded,
                        ))
                        .map(|(_, u)| u),
                )
            }
        };
        let mut page: Vec<&Stored> = Vec::with_capacity(limit + 1);
        for u in iter.filter(|s| {
            email.is_none_or(|e| s.user.attributes.get("email").and_then(Value::as_str) == Some(e))
        }) {
            page.push(u);
            if page.len() > limit {
                break;
            }
        }
        let has_more = page.len() > limit;
        page.truncate(limit);
        let next = if has_more {
            let last = &page[page.len() - 1].user.id;
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("limit", &limit.to_string())
                .append_pair("starting_after", last)
                .finish();
            json!(format!("/users?{q}"))
        } else {
            Value::Null
        };
        let mut body =
            String::with_capacity(64 + page.iter().map(|s| s.json.len() + 1).sum::<usize>());
        body.push_str(r#"{"object":"list","data":["#);
        for (i, s) in page.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&s.json);
        }
        body.push_str(&format!(
            r#"],"has_more":{has_more},"url":"/users","next_page_url":{next}}}"#
        ));
        json_response(StatusCode::OK, body)
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json_response(
        status,
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
}

/// Route a request to the Userflow mock.
pub(crate) fn route(m: &UserflowMock, api_key: &str, req: &MockRequest) -> Resp {
    if req.bearer() != Some(api_key) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid API key");
    }
    let path = req.path.trim_end_matches('/');
    match (&req.method, path) {
        (&Method::GET, "/users") => m.list(req),
        (&Method::POST, "/users") => {
            let body: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_json",
                        &format!("Invalid JSON body: {e}"),
                    )
                }
            };
            let Some(id) = body
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            else {
                return error(StatusCode::BAD_REQUEST, "invalid_params", "id: required");
            };
            let attrs = body
                .get("attributes")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            json_response(StatusCode::OK, m.upsert(id, attrs).to_json().to_string())
        }
        (method, p) if p.starts_with("/users/") => {
            let id = url::form_urlencoded::parse(&p.as_bytes()["/users/".len()..])
                .map(|(k, _)| k.into_owned())
                .next()
                .unwrap_or_default();
            match *method {
                Method::GET => match m.users.lock().unwrap().get(&id) {
                    Some(s) => json_response(StatusCode::OK, s.json.clone()),
                    None => error(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        &format!("No such user: {id}"),
                    ),
                },
                Method::DELETE => {
                    if m.delete(&id) {
                        json_response(
                            StatusCode::OK,
                            json!({"id": id, "object": "user", "deleted": true}).to_string(),
                        )
                    } else {
                        error(
                            StatusCode::NOT_FOUND,
                            "not_found",
                            &format!("No such user: {id}"),
                        )
                    }
                }
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "Method not allowed",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Unknown endpoint {} {}", req.method, req.path),
        ),
    }
}
