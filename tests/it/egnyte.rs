//! Egnyte against the playground mock: full and incremental syncs against the
//! mock's data, the 2 calls/second budget (kept, and throttling survived when
//! the client is allowed more than the server), the daily quota (commit,
//! stop, resume), OAuth refresh with rotated refresh tokens, configuration
//! errors, and disabled streams.

use std::path::Path;
use std::time::Duration;

use etl::config::ConfigReader;
use etl::playground::egnyte::EgnyteOptions;
use etl::playground::{Playground, PlaygroundOptions};
use serde_json::{json, Value};

use crate::common::*;
use crate::dests::{for_both_destinations_async, grid, reader, Kind};

async fn egnyte_playground(e: EgnyteOptions) -> Playground {
    playground_with(PlaygroundOptions {
        users: 0,
        flow_runs: 0,
        egnyte: e,
        ..Default::default()
    })
    .await
}

/// Small data, no server-side QPS limit (most tests are not about throttling).
fn quick() -> EgnyteOptions {
    EgnyteOptions {
        users: 250,
        groups: 6,
        notes: 120,
        bookmarks: 30,
        qps: None,
        ..Default::default()
    }
}

fn cfg(pg: &Playground, extra: Value) -> ConfigReader {
    let mut c = pg.egnyte_config();
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    ConfigReader::from_map(c.as_object().unwrap().clone())
}

async fn sync_egnyte(pg: &Playground, out: &Path, extra: Value) -> etl::Result<etl::SyncSummary> {
    etl::sync("egnyte", cfg(pg, extra), out, opts(100)).await
}

/// A budget that keeps fast tests fast (the mock has no QPS limit there).
fn fast() -> Value {
    json!({"requests_per_second": 100, "concurrency": 4})
}

fn with(mut a: Value, b: Value) -> Value {
    for (k, v) in b.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

/// Live rows of each table as `key|…` text, sorted.
fn stored(out: &Path) -> [Vec<String>; 4] {
    let r = reader(out);
    [
        grid(&r, "SELECT id, user_name, email, given_name, active, auth_type FROM users WHERE NOT _etl_deleted"),
        grid(&r, "SELECT id, display_name, member_count FROM groups WHERE NOT _etl_deleted"),
        grid(&r, "SELECT id, message, epoch_us(creation_time) FROM notes WHERE NOT _etl_deleted"),
        grid(&r, "SELECT id, path FROM bookmarks WHERE NOT _etl_deleted"),
    ]
}

/// The same from the mock (notes: those created in the window).
fn truth(pg: &Playground, notes_since_us: i64) -> [Vec<String>; 4] {
    let m = pg.egnyte();
    let text = |v: &Value| format!("Text({:?})", v.as_str().unwrap());
    let mut users: Vec<String> = m
        .users
        .lock()
        .unwrap()
        .values()
        .map(|u| {
            format!(
                "BigInt({})|{}|{}|{}|Boolean({})|{}",
                u["id"],
                text(&u["userName"]),
                text(&u["email"]),
                text(&u["name"]["givenName"]),
                u["active"],
                text(&u["authType"])
            )
        })
        .collect();
    let mut groups: Vec<String> = m
        .groups
        .lock()
        .unwrap()
        .values()
        .map(|g| {
            format!(
                "{}|{}|Int({})",
                text(&g["id"]),
                text(&g["displayName"]),
                g["members"].as_array().unwrap().len()
            )
        })
        .collect();
    let mut notes: Vec<String> = m
        .notes
        .lock()
        .unwrap()
        .iter()
        .filter(|((created, _), _)| *created >= notes_since_us)
        .map(|((created, _), n)| {
            // Milliseconds on the wire.
            format!(
                "{}|{}|BigInt({})",
                text(&n["id"]),
                text(&n["message"]),
                created / 1000 * 1000
            )
        })
        .collect();
    let mut bookmarks: Vec<String> = m
        .bookmarks
        .lock()
        .unwrap()
        .values()
        .map(|b| format!("BigInt({})|{}", b["id"], text(&b["path"])))
        .collect();
    for v in [&mut users, &mut groups, &mut notes, &mut bookmarks] {
        v.sort();
    }
    [users, groups, notes, bookmarks]
}

/// Midnight UTC `days` ago: where the first sync's notes window starts.
fn days_ago(days: i64) -> i64 {
    let now = chrono::Utc::now();
    let d = (now - chrono::Duration::days(days)).date_naive();
    d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros()
}

fn assert_matches(pg: &Playground, out: &Path, notes_since_us: i64) {
    let (got, want) = (stored(out), truth(pg, notes_since_us));
    for (i, t) in ["users", "groups", "notes", "bookmarks"].iter().enumerate() {
        assert_eq!(got[i].len(), want[i].len(), "{t}");
        assert_eq!(got[i], want[i], "{t}");
    }
}

for_both_destinations_async!(full_sync_then_incremental_changes);

async fn full_sync_then_incremental_changes(kind: Kind) {
    let pg = egnyte_playground(quick()).await;
    let (_d, out) = tmp_for(kind);
    let s = sync_egnyte(&pg, &out, with(fast(), json!({"max_records_per_page": 40})))
        .await
        .unwrap();
    assert_eq!(s.tables["users"].inserted, 250);
    assert_eq!(s.tables["groups"].inserted, 6);
    assert_eq!(s.tables["bookmarks"].inserted, 30);
    let since = days_ago(90);
    assert_matches(&pg, &out, since);

    // Changes: a user edited, one deleted, a bookmark deleted, a note added today.
    let m = pg.egnyte();
    let (first_user, last_user) = {
        let u = m.users.lock().unwrap();
        (*u.keys().next().unwrap(), *u.keys().next_back().unwrap())
    };
    m.users.lock().unwrap().get_mut(&first_user).unwrap()["email"] = json!("changed@example.com");
    m.users.lock().unwrap().remove(&last_user);
    let gone_bookmark = *m.bookmarks.lock().unwrap().keys().nth(3).unwrap();
    m.bookmarks.lock().unwrap().remove(&gone_bookmark);
    let now = chrono::Utc::now().timestamp_micros() / 1000 * 1000;
    m.notes.lock().unwrap().insert(
        (now, "new-note".into()),
        json!({"id": "new-note", "message": "Fresh", "username": "jdoe", "can_delete": true,
               "creation_time": chrono::DateTime::from_timestamp_micros(now).unwrap().format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string(),
               "formatted_name": "Jane Doe", "file_path": "/Shared/x.docx", "file_id": "f1", "group_id": "g1"}),
    );
    let s = sync_egnyte(&pg, &out, fast()).await.unwrap();
    assert_eq!(s.tables["users"].deleted, 1);
    assert_eq!(s.tables["bookmarks"].deleted, 1);
    assert_eq!(s.tables["notes"].inserted, 1, "only the new note is new");
    assert_matches(&pg, &out, since);
    let r = reader(&out);
    assert_eq!(
        grid(
            &r,
            &format!("SELECT email FROM users WHERE id = {first_user}")
        ),
        ["Text(\"changed@example.com\")"]
    );
    assert_eq!(
        grid(
            &r,
            &format!("SELECT _etl_deleted FROM users WHERE id = {last_user}")
        ),
        ["Boolean(true)"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_calls_per_second_are_kept_and_never_throttled() {
    let pg = egnyte_playground(EgnyteOptions {
        users: 300,
        groups: 4,
        notes: 30,
        bookmarks: 10,
        qps: Some(2),
        ..Default::default()
    })
    .await;
    let (_d, out) = tmp();
    let s = sync_egnyte(&pg, &out, json!({"concurrency": 4}))
        .await
        .unwrap();
    assert_matches(&pg, &out, days_ago(90));
    let m = pg.egnyte();
    assert_eq!(m.over_qps(), 0);
    assert_eq!(s.retries, 0);
    // Every pair of calls two apart is about a second apart (never less
    // than 0.9 s: slots are 0.5 s apart, arrival jitter aside).
    let at = m.served_at.lock().unwrap().clone();
    assert!(
        at.len() as u64 >= s.requests && at.len() >= 9,
        "{} calls",
        at.len()
    );
    for w in at.windows(3) {
        assert!(w[2] - w[0] >= Duration::from_millis(900), "{:?}", w);
    }
    let rate = (at.len() - 1) as f64 / (at[at.len() - 1] - at[0]).as_secs_f64();
    assert!(rate <= 2.05, "{rate} calls/s");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_allowed_more_than_the_server_survives_its_throttling() {
    let pg = egnyte_playground(EgnyteOptions {
        qps: Some(2),
        ..quick()
    })
    .await;
    let (_d, out) = tmp();
    // Ten a second against a server that allows two: OVER_QPS 403s, retried
    // after Retry-After (which pauses the whole budget).
    let s = sync_egnyte(
        &pg,
        &out,
        json!({"requests_per_second": 10, "concurrency": 4, "retry_attempts": 10}),
    )
    .await
    .unwrap();
    assert!(pg.egnyte().over_qps() > 0);
    assert!(s.retries > 0);
    assert_matches(&pg, &out, days_ago(90));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_quota_commits_what_was_read_stops_and_a_later_run_resumes() {
    let pg = egnyte_playground(EgnyteOptions {
        daily_quota: Some(12),
        ..quick()
    })
    .await;
    let (_d, out) = tmp();
    let e = sync_egnyte(
        &pg,
        &out,
        with(
            fast(),
            json!({"max_records_per_page": 20, "concurrency": 1}),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.exit_code(), 3, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("quota") && msg.contains("resets in") && msg.contains("committed"),
        "{msg}"
    );
    assert!(pg.egnyte().over_rate() > 0);
    // What was read before the quota ran out is in the destination.
    let users = query_i64(&out, "SELECT count(*) FROM users");
    assert!(users > 0 && users < 250, "{users} users committed");
    let state = saved_state_of(&out, "egnyte").unwrap();
    assert!(
        state["streams"]["users"]["scan"]["position"]
            .as_u64()
            .unwrap()
            > 0,
        "{state}"
    );

    // Each following day the run continues where it stopped (12 calls a day
    // cannot read everything at once) and finally ends with exactly the
    // source's rows.
    let mut committed = users;
    let mut days = 1;
    loop {
        pg.egnyte().reset_quota();
        days += 1;
        assert!(days < 12, "no end in sight");
        match sync_egnyte(
            &pg,
            &out,
            with(
                fast(),
                json!({"max_records_per_page": 20, "concurrency": 1}),
            ),
        )
        .await
        {
            Ok(_) => break,
            Err(e) => {
                assert_eq!(e.exit_code(), 3, "{e}");
                let now = query_i64(&out, "SELECT count(*) FROM users");
                assert!(now >= committed, "{now} < {committed}");
                committed = now;
            }
        }
    }
    assert!(days >= 3, "the quota should have stopped more than one run");
    assert_matches(&pg, &out, days_ago(90));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refreshed_and_the_rotated_refresh_token_is_used_next_run() {
    let pg = std::sync::Arc::new(egnyte_playground(quick()).await);
    let (_d, out) = tmp();
    // The access token stops working a few calls into the sync.
    let expirer = {
        let pg = pg.clone();
        tokio::spawn(async move {
            while pg.egnyte().served_at.lock().unwrap().len() < 4 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            pg.egnyte().expire_tokens();
        })
    };
    let s = sync_egnyte(
        &pg,
        &out,
        with(
            fast(),
            json!({"max_records_per_page": 20, "concurrency": 1}),
        ),
    )
    .await
    .unwrap();
    expirer.await.unwrap();
    assert_eq!(s.token_refreshes, 1, "the summary counts the refresh");
    assert_eq!(
        pg.egnyte().refreshes(),
        1,
        "one refresh, however many requests were refused"
    );
    assert_matches(&pg, &out, days_ago(90));
    // The refresh rotated the refresh token: the configured one is dead now,
    // and the new one is in the state, sealed.
    let rotated = pg.egnyte().refresh_token();
    assert_ne!(rotated, etl::playground::egnyte::INITIAL_REFRESH_TOKEN);
    let bytes = std::fs::read(&out).unwrap();
    let leaked = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(!leaked(&rotated), "the refresh token reached the file");
    let state = saved_state_of(&out, "egnyte").unwrap();
    assert!(
        state["streams"]["_oauth"]["refresh_token_sealed"].is_string(),
        "{state}"
    );

    // Next run, same configuration: its access token is refused at once, and
    // only the rotated refresh token (from the state) can renew it. The token
    // endpoint is busy at first (409 + Retry-After, as Egnyte's).
    pg.egnyte().expire_tokens();
    pg.fault_on(
        "/puboauth/token",
        etl::playground::Fault::Status {
            status: 409,
            retry_after: Some("1".into()),
            body: "{\"error\": \"throttled\"}".into(),
        },
    );
    let s = sync_egnyte(&pg, &out, fast()).await.unwrap();
    assert_eq!(pg.egnyte().refreshes(), 2);
    assert!(s.retries >= 1, "the 409 was retried");
    assert_matches(&pg, &out, days_ago(90));
}

#[tokio::test(flavor = "multi_thread")]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let pg = egnyte_playground(EgnyteOptions {
        token_ttl: Some(Duration::from_secs(2)),
        ..quick()
    })
    .await;
    let (_d, out) = tmp();
    // 2 calls/s for ~25 calls: the sync outlives several tokens.
    let s = sync_egnyte(
        &pg,
        &out,
        json!({"requests_per_second": 4, "max_records_per_page": 25}),
    )
    .await
    .unwrap();
    let refreshes = pg.egnyte().refreshes();
    assert!(refreshes >= 2, "{refreshes} refreshes");
    assert!(refreshes <= 8, "{refreshes} refreshes: not one per request");
    // The first token was refused once (its lifetime was unknown); later ones
    // were renewed in time, so at most one request per sync was refused.
    assert!(s.retries <= 1, "{} retries", s.retries);
    assert_matches(&pg, &out, days_ago(90));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_names_the_key_and_never_the_token() {
    let pg = egnyte_playground(quick()).await;
    let (_d, out) = tmp();
    let e = sync_egnyte(
        &pg,
        &out,
        json!({"api_token": "tok_wrong_0123456789", "refresh_token": null}),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("api_token") && e.contains("401"), "{e}");
    assert!(e.contains("refresh_token"), "suggests renewing: {e}");
    assert!(!e.contains("tok_wrong_0123456789"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn disabled_streams_are_not_requested() {
    let pg = egnyte_playground(quick()).await;
    let (_d, out) = tmp();
    let s = sync_egnyte(
        &pg,
        &out,
        with(
            fast(),
            json!({"enable_groups": "false", "enable_notes": false, "enable_bookmarks": "FALSE"}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(s.tables["users"].inserted, 250);
    assert_eq!(pg.take_max_in_flight_on("/pubapi/v2/groups"), 0);
    assert_eq!(pg.take_max_in_flight_on("/pubapi/v1/notes"), 0);
    assert_eq!(pg.take_max_in_flight_on("/pubapi/v1/bookmarks"), 0);
    assert!(pg.take_max_in_flight_on("/pubapi/v2/users") > 0);
    assert_eq!(query_i64(&out, "SELECT count(*) FROM groups"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_errors_name_the_key_and_range() {
    for (extra, says) in [
        (
            json!({"max_records_per_page": 0}),
            "\"max_records_per_page\": must be an integer from 1 to 1000, got 0",
        ),
        (
            json!({"max_records_per_page": "1001"}),
            "\"max_records_per_page\": must be an integer from 1 to 1000, got 1001",
        ),
        (
            json!({"initial_sync_days": 366}),
            "\"initial_sync_days\": must be an integer from 1 to 365, got 366",
        ),
        (
            json!({"request_timeout_seconds": "soon"}),
            "\"request_timeout_seconds\": must be an integer from 1 to 600",
        ),
        (
            json!({"retry_attempts": 0}),
            "\"retry_attempts\": must be an integer from 1 to 10, got 0",
        ),
        (
            json!({"enable_users": "maybe"}),
            "\"enable_users\": must be true or false",
        ),
        (
            json!({"sync_frequency_hours": "<SYNC_FREQUENCY_HOURS>"}),
            "\"sync_frequency_hours\": must be an integer",
        ),
        (
            json!({"api_token": "<YOUR_EGNYTE_API_TOKEN>"}),
            "\"api_token\": still holds the placeholder",
        ),
        (json!({"api_token": ""}), "\"api_token\": is required"),
        (
            json!({"domain": "<YOUR_EGNYTE_DOMAIN>"}),
            "\"domain\": still holds the placeholder",
        ),
        (
            json!({"domain": "acme corp"}),
            "\"domain\": must be the Egnyte domain name",
        ),
        (
            json!({"requests_per_second": 0}),
            "\"requests_per_second\": must be an integer from 1 to 100, got 0",
        ),
        (
            json!({"enable_bookmark": true}),
            "unknown key \"enable_bookmark\"",
        ),
    ] {
        let mut c = json!({"api_token": "tok_abcdef", "domain": "acme"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let (_d, out) = tmp();
        let e = etl::sync(
            "egnyte",
            ConfigReader::from_map(c.as_object().unwrap().clone()),
            &out,
            opts(100),
        )
        .await
        .unwrap_err();
        assert!(e.is_user_error(), "{e}");
        assert!(e.to_string().contains(says), "{extra}: {e}");
        assert!(!e.to_string().contains("tok_abcdef"), "{e}");
        assert!(
            !out.exists(),
            "a bad configuration leaves no destination behind"
        );
    }
}
