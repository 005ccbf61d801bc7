//! Prefect mock (SOURCES.md §2), served under `/prefect/api`: `POST
//! /{flows,flow_runs,deployments}/filter` answering bare JSON arrays, `POST
//! …/count` answering a bare integer, `GET /health`. Request bodies are
//! checked as the real server checks them: `limit` above 200 or below 0 →
//! 422 with the server's `detail`; an unknown sort value or top-level key →
//! 422 with pydantic's `exception_detail`. Records have the 3.x shapes, with
//! pydantic's datetimes (`Z`, six fraction digits, none when zero).
//! Sub-filters (`flows`, `flow_runs`, …) are accepted and not applied: the
//! connector does not send them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use super::wire::{json_response, MockRequest, Resp, SplitMix64};

/// Where the mock lives on the playground server.
pub const PREFIX: &str = "/prefect/api";

const STATES: [(&str, &str); 6] = [
    ("COMPLETED", "Completed"),
    ("COMPLETED", "Completed"),
    ("FAILED", "Failed"),
    ("RUNNING", "Running"),
    ("SCHEDULED", "Scheduled"),
    ("CANCELLED", "Cancelled"),
];

/// A stored object with the fields the sorts need.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: String,
    pub name: String,
    /// Microseconds since the epoch.
    pub created: i64,
    pub updated: i64,
    pub expected_start: Option<i64>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub json: Value,
    text: String,
}

impl Record {
    fn new(json: Value) -> Self {
        let t = |k: &str| {
            json.get(k)
                .and_then(Value::as_str)
                .and_then(crate::decode::values::parse_utc_micros)
        };
        Record {
            id: json["id"].as_str().unwrap_or_default().to_string(),
            name: json["name"].as_str().unwrap_or_default().to_string(),
            created: t("created").unwrap_or(0),
            updated: t("updated").unwrap_or(0),
            expected_start: t("expected_start_time"),
            start: t("start_time"),
            end: t("end_time"),
            text: json.to_string(),
            json,
        }
    }
}

/// Datetimes as pydantic v2 writes them.
pub fn pydantic_time(micros: i64) -> String {
    let d = chrono::DateTime::from_timestamp_micros(micros).expect("in range");
    if micros % 1_000_000 == 0 {
        d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

/// The mock's data: three collections keyed by id.
pub struct PrefectMock {
    pub flows: Mutex<BTreeMap<String, Record>>,
    pub flow_runs: Mutex<BTreeMap<String, Record>>,
    pub deployments: Mutex<BTreeMap<String, Record>>,
    rng: Mutex<SplitMix64>,
}

impl PrefectMock {
    /// `flow_runs` runs of 40 flows and 25 deployments, from `seed`, in the past.
    pub fn generate(flow_runs: usize, seed: u64) -> Self {
        let mut rng = SplitMix64(seed ^ 0x009e_f3c7);
        let base = 1_704_067_200_000_000i64; // 2024-01-01T00:00:00Z
        let mut flows = BTreeMap::new();
        let mut flow_ids = Vec::new();
        for i in 0..40 {
            let id = rng.uuid();
            let created = base + i * 3_600_000_000 + rng.below(1_000_000) as i64;
            let updated = created + rng.below(86_400_000_000) as i64;
            let tags = if i % 3 == 0 {
                json!(["prod"])
            } else {
                json!([])
            };
            flow_ids.push(id.clone());
            flows.insert(
                id.clone(),
                Record::new(json!({"id": id, "created": pydantic_time(created), "updated": pydantic_time(updated),
                    "name": format!("flow-{i:03}"), "tags": tags, "labels": {}})),
            );
        }
        let mut deployments = BTreeMap::new();
        let mut deployment_ids = Vec::new();
        for i in 0..25 {
            let id = rng.uuid();
            let flow_id = flow_ids[i % flow_ids.len()].clone();
            let created = base + (i as i64) * 7_200_000_000;
            let updated = created + rng.below(3_600_000_000) as i64;
            deployment_ids.push(id.clone());
            deployments.insert(
                id.clone(),
                Record::new(deployment(&id, &flow_id, i, created, updated, &mut rng)),
            );
        }
        let mut runs = BTreeMap::new();
        for i in 0..flow_runs {
            let r = run(&mut rng, i, base, &flow_ids, &deployment_ids);
            runs.insert(r.id.clone(), r);
        }
        PrefectMock {
            flows: Mutex::new(flows),
            flow_runs: Mutex::new(runs),
            deployments: Mutex::new(deployments),
            rng: Mutex::new(rng),
        }
    }

    fn collection(&self, objects: &str) -> Option<&Mutex<BTreeMap<String, Record>>> {
        match objects {
            "flows" => Some(&self.flows),
            "flow_runs" => Some(&self.flow_runs),
            "deployments" => Some(&self.deployments),
            _ => None,
        }
    }

    /// Every record of `objects` (the ground truth tests compare with).
    pub fn all(&self, objects: &str) -> Vec<Record> {
        self.collection(objects)
            .map(|c| c.lock().unwrap().values().cloned().collect())
            .unwrap_or_default()
    }

    /// Change fields of one record and stamp `updated` with the current time.
    pub fn modify(&self, objects: &str, id: &str, fields: Value) -> bool {
        let Some(c) = self.collection(objects) else {
            return false;
        };
        let mut c = c.lock().unwrap();
        let Some(r) = c.get_mut(id) else { return false };
        let mut json = r.json.clone();
        for (k, v) in fields.as_object().cloned().unwrap_or_default() {
            json[k] = v;
        }
        json["updated"] = json!(pydantic_time(chrono::Utc::now().timestamp_micros()));
        *r = Record::new(json);
        true
    }

    /// Add `n` new flow runs, created now.
    pub fn add_flow_runs(&self, n: usize) -> Vec<String> {
        let flow_ids: Vec<String> = self.flows.lock().unwrap().keys().cloned().collect();
        let dep_ids: Vec<String> = self.deployments.lock().unwrap().keys().cloned().collect();
        let now = chrono::Utc::now().timestamp_micros();
        let mut rng = self.rng.lock().unwrap();
        let mut runs = self.flow_runs.lock().unwrap();
        (0..n)
            .map(|i| {
                let r = run(
                    &mut rng,
                    runs.len() + i,
                    now - 3_600_000_000,
                    &flow_ids,
                    &dep_ids,
                );
                let mut json = r.json.clone();
                json["created"] = json!(pydantic_time(now));
                json["updated"] = json!(pydantic_time(now));
                let r = Record::new(json);
                let id = r.id.clone();
                runs.insert(id.clone(), r);
                id
            })
            .collect()
    }

    /// Remove a record (deployments are deleted in Prefect; the table soft-deletes).
    pub fn remove(&self, objects: &str, id: &str) -> bool {
        self.collection(objects)
            .is_some_and(|c| c.lock().unwrap().remove(id).is_some())
    }
}

fn deployment(
    id: &str,
    flow_id: &str,
    i: usize,
    created: i64,
    updated: i64,
    rng: &mut SplitMix64,
) -> Value {
    let schedules = if i % 4 == 3 {
        json!([])
    } else {
        json!([{"id": rng.uuid(), "created": pydantic_time(created), "updated": pydantic_time(created),
            "deployment_id": id,
            "schedule": if i.is_multiple_of(2) { json!({"interval": 3600.0, "anchor_date": pydantic_time(created), "timezone": "UTC"}) }
                        else { json!({"cron": "0 6 * * *", "timezone": "UTC", "day_or": true}) },
            "active": true, "max_scheduled_runs": null, "parameters": {}, "slug": null}])
    };
    json!({"id": id, "created": pydantic_time(created), "updated": pydantic_time(updated),
        "name": format!("deployment-{i:02}"), "version": null, "description": null, "flow_id": flow_id,
        "paused": i.is_multiple_of(5), "schedules": schedules, "concurrency_limit": null, "global_concurrency_limit": null,
        "concurrency_options": null, "job_variables": {}, "parameters": {}, "tags": ["etl"],
        "labels": {"prefect.flow.id": flow_id}, "work_queue_name": null, "work_queue_id": null, "last_polled": null,
        "parameter_openapi_schema": {}, "path": null, "pull_steps": [], "entrypoint": null,
        "storage_document_id": null, "infrastructure_document_id": null, "created_by": null, "updated_by": null,
        "work_pool_name": null, "status": "NOT_READY", "enforce_parameter_schema": true})
}

fn run(
    rng: &mut SplitMix64,
    i: usize,
    base: i64,
    flows: &[String],
    deployments: &[String],
) -> Record {
    let id = rng.uuid();
    let flow_id = &flows[rng.below(flows.len() as u64) as usize];
    let deployment_id = if rng.below(3) == 0 {
        Value::Null
    } else {
        json!(deployments[rng.below(deployments.len() as u64) as usize])
    };
    let expected =
        base + (i as i64) * 60_000_000 + rng.below(1_000_000) as i64 * (rng.below(2) as i64);
    let created = expected - 300_000_000;
    let (state_type, state_name) = STATES[rng.below(STATES.len() as u64) as usize];
    let started = matches!(state_type, "COMPLETED" | "FAILED" | "RUNNING");
    let start = started.then(|| expected + rng.below(5_000_000) as i64);
    let end = match state_type {
        "COMPLETED" | "FAILED" => start.map(|s| s + rng.below(600_000_000) as i64),
        "CANCELLED" => Some(expected),
        _ => None,
    };
    let updated = end.or(start).unwrap_or(created);
    let t = |v: Option<i64>| v.map_or(Value::Null, |v| json!(pydantic_time(v)));
    let state_id = rng.uuid();
    Record::new(json!({
        "id": id, "created": pydantic_time(created), "updated": pydantic_time(updated),
        "name": format!("run-{i:06}"), "flow_id": flow_id, "state_id": state_id,
        "deployment_id": deployment_id, "deployment_version": null, "work_queue_id": null,
        "work_queue_name": "default", "flow_version": "a1b2c3", "parameters": {"day": format!("2024-05-{:02}", i % 28 + 1), "n": i},
        "idempotency_key": null, "context": {}, "empirical_policy": {"max_retries": 0, "retry_delay_seconds": 0.0,
            "retries": 0, "retry_delay": 0, "pause_keys": [], "resuming": false, "retry_type": null},
        "tags": if i.is_multiple_of(2) { json!(["prod"]) } else { json!([]) }, "labels": {},
        "parent_task_run_id": null, "state_type": state_type, "state_name": state_name,
        "run_count": u8::from(started), "expected_start_time": pydantic_time(expected),
        "next_scheduled_start_time": null, "start_time": t(start), "end_time": t(end),
        "total_run_time": 0.0, "estimated_run_time": 0.0, "estimated_start_time_delta": 0.0,
        "auto_scheduled": deployment_id.is_string(), "infrastructure_document_id": null, "infrastructure_pid": null,
        "created_by": null, "work_pool_id": null, "work_pool_name": null,
        "state": {"id": state_id, "type": state_type, "name": state_name, "timestamp": pydantic_time(updated),
            "message": null, "data": null, "state_details": {"flow_run_id": id}},
        "job_variables": {}
    }))
}

fn detail(status: StatusCode, msg: &str) -> Resp {
    json_response(status, json!({"detail": msg}).to_string())
}

fn invalid(body: &Value, loc: &[&str], kind: &str, msg: &str, input: &Value) -> Resp {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({"exception_message": "Invalid request received.",
            "exception_detail": [{"type": kind, "loc": loc, "msg": msg, "input": input}],
            "request_body": body})
        .to_string(),
    )
}

fn sorts(objects: &str) -> &'static [&'static str] {
    match objects {
        "flow_runs" => &[
            "ID_DESC",
            "START_TIME_ASC",
            "START_TIME_DESC",
            "EXPECTED_START_TIME_ASC",
            "EXPECTED_START_TIME_DESC",
            "NAME_ASC",
            "NAME_DESC",
            "NEXT_SCHEDULED_START_TIME_ASC",
            "END_TIME_DESC",
        ],
        _ => &["CREATED_DESC", "UPDATED_DESC", "NAME_ASC", "NAME_DESC"],
    }
}

/// Route a request under [`PREFIX`] (the prefix already removed). Long by
/// design: one arm per endpoint of Prefect's API, so the mock reads like
/// the API's reference.
pub(crate) fn route(m: &PrefectMock, api_key: &str, req: &MockRequest, path: &str) -> Resp {
    if let Some(key) = req.bearer() {
        if key != api_key {
            return detail(
                StatusCode::UNAUTHORIZED,
                "Invalid authentication credentials",
            );
        }
    } else if !api_key.is_empty() {
        return detail(
            StatusCode::UNAUTHORIZED,
            "Invalid authentication credentials",
        );
    }
    let path = path.trim_end_matches('/');
    if req.method == Method::GET && path == "/health" {
        return json_response(StatusCode::OK, "true");
    }
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (objects, action) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(collection) = m.collection(objects) else {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    };
    if req.method != Method::POST || !matches!(action, "filter" | "count") {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    }
    let body: Value = if req.body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&req.body) {
            Ok(v) => v,
            Err(e) => {
                return invalid(
                    &Value::Null,
                    &["body"],
                    "json_invalid",
                    &format!("JSON decode error: {e}"),
                    &Value::Null,
                )
            }
        }
    };
    let Some(obj) = body.as_object() else {
        return invalid(
            &body,
            &["body"],
            "model_attributes_type",
            "Input should be a valid dictionary",
            &body,
        );
    };
    let mut allowed = vec![
        "limit",
        "offset",
        "sort",
        "flows",
        "flow_runs",
        "task_runs",
        "deployments",
        "work_pools",
    ];
    if objects != "flows" {
        allowed.push("work_pool_queues");
    }
    if action == "count" {
        allowed.retain(|k| !matches!(*k, "limit" | "offset" | "sort"));
    }
    if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        return invalid(
            &body,
            &["body", k],
            "extra_forbidden",
            "Extra inputs are not permitted",
            &obj[k],
        );
    }
    let c = collection.lock().unwrap();
    if action == "count" {
        return json_response(StatusCode::OK, c.len().to_string());
    }
    let int = |k: &str| -> Result<Option<i64>, Resp> {
        match obj.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                invalid(
                    &body,
                    &["body", k],
                    "int_type",
                    "Input should be a valid integer",
                    v,
                )
            }),
        }
    };
    let limit = match int("limit") {
        Ok(l) => l.unwrap_or(200),
        Err(r) => return r,
    };
    if limit > 200 {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid limit: must be less than or equal to 200.",
        );
    }
    if limit < 0 {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid limit: must be greater than or equal to 0.",
        );
    }
    let offset = match int("offset") {
        Ok(o) => o.unwrap_or(0),
        Err(r) => return r,
    };
    if offset < 0 {
        return invalid(
            &body,
            &["body", "offset"],
            "greater_than_equal",
            "Input should be greater than or equal to 0",
            &json!(offset),
        );
    }
    let default_sort = if objects == "flow_runs" {
        "ID_DESC"
    } else {
        "NAME_ASC"
    };
    let sort = match obj.get("sort") {
        None | Some(Value::Null) => default_sort.to_string(),
        Some(Value::String(v)) if sorts(objects).contains(&v.as_str()) => v.clone(),
        Some(v) => {
            let expected = sorts(objects)
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>();
            let (init, last) = expected.split_at(expected.len() - 1);
            let msg = format!("Input should be {} or {}", init.join(", "), last[0]);
            return invalid(&body, &["body", "sort"], "enum", &msg, v);
        }
    };
    let page = |rows: &mut dyn Iterator<Item = &Record>| {
        let page: Vec<&str> = rows
            .skip(offset as usize)
            .take(limit as usize)
            .map(|r| r.text.as_str())
            .collect();
        json_response(StatusCode::OK, format!("[{}]", page.join(",")))
    };
    if sort == "ID_DESC" {
        // The store is ordered by id: no need to sort (or even collect) it.
        return page(&mut c.values().rev());
    }
    let mut rows: Vec<&Record> = c.values().collect();
    // Ties fall back to id, as the database's order does in practice.
    let desc_opt = |a: Option<i64>, b: Option<i64>| b.cmp(&a);
    match sort.as_str() {
        "CREATED_DESC" => rows.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id))),
        "UPDATED_DESC" => rows.sort_by(|a, b| b.updated.cmp(&a.updated).then(a.id.cmp(&b.id))),
        "NAME_ASC" => rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id))),
        "NAME_DESC" => rows.sort_by(|a, b| b.name.cmp(&a.name).then(a.id.cmp(&b.id))),
        "START_TIME_ASC" => rows.sort_by_key(|r| (r.start.or(r.expected_start), r.id.clone())),
        "START_TIME_DESC" => rows
            .sort_by(|a, b| desc_opt(a.start.or(a.expected_start), b.start.or(b.expected_start))),
        "EXPECTED_START_TIME_ASC" => rows.sort_by_key(|r| (r.expected_start, r.id.clone())),
        "EXPECTED_START_TIME_DESC" => {
            rows.sort_by(|a, b| desc_opt(a.expected_start, b.expected_start))
        }
        "END_TIME_DESC" => rows.sort_by(|a, b| desc_opt(a.end, b.end)),
        _ => {}
    }
    page(&mut rows.into_iter())
}

/// Fields of a record as a JSON map (tests).
pub fn fields(r: &Record) -> Map<String, Value> {
    r.json.as_object().cloned().unwrap_or_default()
}
