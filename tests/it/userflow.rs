//! Userflow end to end: full sync, reruns, changes, faults, crashes.

use std::time::Duration;

use etl::playground::{Fault, PlaygroundOptions};
use etl::Error;
use serde_json::{json, Map, Value};

use crate::common::*;
use crate::dests::{for_both_destinations_async, Kind};

for_both_destinations_async!(
    every_run_is_recorded_in_etl_runs,
    full_sync_equals_ground_truth_and_raw_is_the_api_object,
    rerun_leaves_counts_unchanged,
    changes_between_syncs_are_merged_and_deletions_soft_deleted,
    malformed_page_fails_and_keeps_only_committed_rows,
    dropping_the_sync_midway_then_resuming_is_exact,
);

async fn full_sync_equals_ground_truth_and_raw_is_the_api_object(kind: Kind) {
    let pg = playground(1_050).await;
    let (_d, db) = tmp_for(kind);
    let s = sync(&pg, &db, json!({}), 250_000).await.unwrap();
    assert_eq!(s.tables["users"].inserted, 1_050);
    assert_eq!(s.tables["users"].updated, 0);
    assert_eq!(s.pages, 11);
    assert_eq!(read_users(&db), expected_users(&pg));
    // raw holds each user exactly as the API sent it.
    let conn = crate::dests::reader(&db);
    let mut stmt = conn
        .prepare("SELECT CAST(raw AS VARCHAR) FROM users ORDER BY id")
        .unwrap();
    let raws: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let truth: Vec<Value> = pg.userflow().users().iter().map(|u| u.to_json()).collect();
    let got: Vec<Value> = raws
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    assert_eq!(got, truth);
    // Column types as declared.
    let t: String = conn
        .query_row("SELECT data_type FROM information_schema.columns WHERE table_name='users' AND column_name='created_at'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(t, "TIMESTAMP WITH TIME ZONE");
    let t: String = conn
        .query_row("SELECT data_type FROM information_schema.columns WHERE table_name='users' AND column_name='raw'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(t, "JSON");
}

async fn rerun_leaves_counts_unchanged(kind: Kind) {
    let pg = playground(500).await;
    let (_d, db) = tmp_for(kind);
    sync(&pg, &db, json!({"page_size": 37}), 100).await.unwrap();
    let s = sync(&pg, &db, json!({"page_size": 37}), 100).await.unwrap();
    assert_eq!(s.tables["users"].inserted, 0);
    // Nothing changed at the source: no row is rewritten.
    assert_eq!(s.tables["users"].updated, 0);
    assert_eq!(s.tables["users"].unchanged, 500);
    assert_eq!(s.tables["users"].deleted, 0);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM users"), 500);
    assert_eq!(query_i64(&db, "SELECT count(DISTINCT id) FROM users"), 500);
    assert_eq!(read_users(&db), expected_users(&pg));
}

async fn changes_between_syncs_are_merged_and_deletions_soft_deleted(kind: Kind) {
    let pg = playground(300).await;
    let (_d, db) = tmp_for(kind);
    sync(&pg, &db, json!({}), 1_000).await.unwrap();
    let users = pg.userflow().users();
    // Change an old user (the SDK example's cursor would never see this), add one, delete one.
    let mut attrs = Map::new();
    attrs.insert("email".into(), json!("changed@example.com"));
    attrs.insert("name".into(), json!("Changed Name"));
    pg.userflow().upsert(&users[0].id, attrs);
    let mut attrs = Map::new();
    attrs.insert("email".into(), json!("new@example.com"));
    pg.userflow().upsert("0000-new-user", attrs);
    assert!(pg.userflow().delete(&users[5].id));

    let s = sync(&pg, &db, json!({}), 1_000).await.unwrap();
    assert_eq!(s.tables["users"].inserted, 1);
    assert_eq!(s.tables["users"].deleted, 1);
    assert_eq!(live(read_users(&db)), expected_users(&pg));
    let all = read_users(&db);
    let gone = all
        .iter()
        .find(|r| r.0 == users[5].id)
        .expect("deleted user kept as a soft delete");
    assert!(gone.5);
    let changed = all.iter().find(|r| r.0 == users[0].id).unwrap();
    assert_eq!(changed.1.as_deref(), Some("changed@example.com"));
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_429_with_retry_after_and_5xx_then_succeeds() {
    let pg = playground(250).await;
    let (_d, db) = tmp();
    let body = r#"{"error":{"code":"rate_limited","message":"slow down"}}"#.to_string();
    pg.fault_at(
        2,
        Fault::Status {
            status: 429,
            retry_after: Some("1".into()),
            body,
        },
    );
    pg.fault_at(
        4,
        Fault::Status {
            status: 503,
            retry_after: None,
            body: "unavailable".into(),
        },
    );
    pg.fault_at(
        5,
        Fault::Status {
            status: 500,
            retry_after: None,
            body: "{}".into(),
        },
    );
    let started = std::time::Instant::now();
    let s = sync(&pg, &db, fast_retries(), 1_000).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!(s.retries, 3);
    assert_eq!(s.requests, 3 + 3);
    // The summary says how long the retries waited: Retry-After's second at least.
    assert!(s.waited_secs >= 1.0, "{s:?}");
    assert_eq!(s.token_refreshes, 0);
    assert_eq!(read_users(&db), expected_users(&pg));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_is_retried() {
    let pg = playground(150).await;
    let (_d, db) = tmp();
    pg.fault_at(1, Fault::Delay(Duration::from_millis(2_500)));
    let s = sync(&pg, &db, fast_retries(), 1_000).await.unwrap();
    assert_eq!(s.retries, 1);
    assert_eq!(read_users(&db), expected_users(&pg));
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_5xx_fails_after_n_attempts_naming_the_url() {
    let pg = playground(150).await;
    let (_d, db) = tmp();
    for n in 1..=4 {
        pg.fault_at(
            n,
            Fault::Status {
                status: 502,
                retry_after: Some("0".into()),
                body: "bad gateway".into(),
            },
        );
    }
    let e = sync(&pg, &db, fast_retries(), 1_000).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("failed after 4 attempts")
            && msg.contains("HTTP 502")
            && msg.contains("/users?limit=100"),
        "{msg}"
    );
    assert!(!e.is_user_error());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_fails_at_once_with_the_servers_message() {
    let pg = playground(10).await;
    let (_d, db) = tmp();
    let e = sync(&pg, &db, json!({"userflow_api_key": "ak_wrong"}), 1_000)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("HTTP 401") && msg.contains("Invalid API key"),
        "{msg}"
    );
    assert!(!msg.contains("failed after"), "401 is not retried: {msg}");
    assert_eq!(pg.requests(), 1);
}

async fn malformed_page_fails_and_keeps_only_committed_rows(kind: Kind) {
    let pg = playground(1_000).await;
    let (_d, db) = tmp_for(kind);
    // Commits after pages 3 and 6 (300 rows each); page 8 is malformed.
    pg.fault_at(8, Fault::Malformed);
    let e = sync(&pg, &db, json!({}), 250).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Source { .. }), "{e:?}");
    assert!(
        msg.contains("malformed list object") && msg.contains("starting_after="),
        "{msg}"
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM users"),
        600,
        "page 7 was applied but not committed"
    );
    let state = saved_state(&db).unwrap();
    let after = state["streams"]["users"]["scan"]["after"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(after, pg.userflow().users()[599].id);
    // Rerunning the same command resumes at page 7 and ends exact.
    let s = sync(&pg, &db, json!({}), 250).await.unwrap();
    assert_eq!(s.pages, 4);
    assert_eq!(read_users(&db), expected_users(&pg));
}

#[tokio::test(flavor = "multi_thread")]
async fn type_violation_names_table_column_row_and_value() {
    let pg = playground(1_000).await;
    let mut attrs = Map::new();
    attrs.insert("signed_up_at".into(), json!("yesterday"));
    pg.userflow().upsert("zzzz-last-user", attrs);
    let (_d, db) = tmp();
    let e = sync(&pg, &db, json!({}), 250).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("table users")
            && msg.contains("column signed_up_at")
            && msg.contains("row 1000")
            && msg.contains("\"yesterday\"")
            && msg.contains("UTC_DATETIME"),
        "{msg}"
    );
    assert_eq!(
        query_i64(&db, "SELECT count(*) FROM users"),
        900,
        "nothing past the last commit"
    );
}

async fn dropping_the_sync_midway_then_resuming_is_exact(kind: Kind) {
    let pg = playground_with(PlaygroundOptions {
        users: 3_000,
        latency: Duration::from_millis(15),
        ..Default::default()
    })
    .await;
    let (_d, db) = tmp_for(kind);
    let fut = sync(&pg, &db, json!({}), 1);
    let r = tokio::time::timeout(Duration::from_millis(250), fut).await;
    assert!(r.is_err(), "the sync should still be running when dropped");
    // The writer thread rolls back and closes the file once it sees the channel
    // close. Other tests' writers count too; they all finish within seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while etl::engine::active_writers() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let committed = query_i64(&db, "SELECT count(*) FROM users");
    assert!(
        committed > 0 && committed < 3_000,
        "stopped midway, {committed} rows committed"
    );
    let s = sync(&pg, &db, json!({}), 1).await.unwrap();
    assert!(
        s.pages < 30,
        "resumed instead of starting over: {} pages",
        s.pages
    );
    assert_eq!(read_users(&db), expected_users(&pg));
    assert_eq!(
        query_i64(&db, "SELECT count(*) - count(DISTINCT id) FROM users"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_after_the_saved_cursor_was_deleted_restarts_the_scan() {
    let pg = playground(500).await;
    let (_d, db) = tmp();
    pg.fault_at(3, Fault::Malformed);
    sync(&pg, &db, json!({}), 1).await.unwrap_err();
    let state = saved_state(&db).unwrap();
    let after = state["streams"]["users"]["scan"]["after"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(pg.userflow().delete(&after));
    let s = sync(&pg, &db, json!({}), 1).await.unwrap();
    assert_eq!(
        s.tables["users"].deleted, 1,
        "the deleted user is soft-deleted"
    );
    assert_eq!(live(read_users(&db)), expected_users(&pg));
}

#[tokio::test(flavor = "multi_thread")]
async fn full_refresh_ignores_saved_progress() {
    let pg = playground(200).await;
    let (_d, db) = tmp();
    pg.fault_at(2, Fault::Malformed);
    sync(&pg, &db, json!({}), 1).await.unwrap_err();
    let mut o = opts(1);
    o.full_refresh = true;
    let s = etl::sync("userflow", config(&pg, json!({})), &db, o)
        .await
        .unwrap();
    assert_eq!(s.pages, 2, "started from the first page");
    assert_eq!(read_users(&db), expected_users(&pg));
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_source_and_last_page_exactly_full() {
    let pg = playground(0).await;
    let (_d, db) = tmp();
    let s = sync(&pg, &db, json!({}), 1_000).await.unwrap();
    assert_eq!(s.rows, 0);
    assert_eq!(query_i64(&db, "SELECT count(*) FROM users"), 0);
    let pg = playground(200).await;
    let (_d2, db2) = tmp();
    let s = sync(&pg, &db2, json!({}), 1_000).await.unwrap();
    assert_eq!(s.pages, 2);
    assert_eq!(read_users(&db2), expected_users(&pg));
}

#[tokio::test(flavor = "multi_thread")]
async fn time_based_checkpoints_commit_at_page_boundaries() {
    let pg = playground(500).await;
    let (_d, db) = tmp();
    let mut o = opts(u64::MAX);
    o.checkpoint_interval = Duration::ZERO;
    let s = etl::sync("userflow", config(&pg, json!({})), &db, o)
        .await
        .unwrap();
    // A commit at each of the 5 page markers, one at the end-of-scan marker.
    assert_eq!(s.commits, 6);
    let s = sync(&pg, &db, json!({}), u64::MAX).await.unwrap();
    assert_eq!(
        s.commits, 1,
        "row threshold never reached: one commit at the end"
    );
    assert_eq!(read_users(&db), expected_users(&pg));
}

/// `_etl_runs` holds one row per sync, failed ones included, queryable with SQL.
async fn every_run_is_recorded_in_etl_runs(kind: Kind) {
    let pg = playground(250).await;
    let (_d, db) = tmp_for(kind);
    sync(&pg, &db, json!({}), 1_000_000).await.unwrap();
    pg.fault_at(
        pg.requests() + 2,
        Fault::Status {
            status: 400,
            retry_after: None,
            body: r#"{"error":{"code":"invalid_params","message":"nope"}}"#.into(),
        },
    );
    sync(&pg, &db, json!({}), 100).await.unwrap_err();
    let rows = crate::dests::grid(
        &crate::dests::reader(&db),
        "SELECT status, connector, rows_read, requests, commits, \
         CAST(tables->'$.users.inserted' AS BIGINT), CAST(tables->'$.users.unchanged' AS BIGINT), \
         CAST(http_statuses->'$.\"200\"' AS BIGINT), CAST(http_statuses->'$.\"400\"' AS BIGINT), \
         error IS NULL, ended_at >= started_at FROM _etl_runs ORDER BY started_at",
    );
    // (Rows come back sorted as text: "failed" before "ok".)
    assert_eq!(rows.len(), 2, "{rows:?}");
    // A Parquet dataset commits what a complete scan read before it counts
    // the rows the scan did not see (the deletion guard): one commit more.
    let commits = if kind == Kind::Parquet { 2 } else { 1 };
    assert_eq!(
        rows[1],
        format!("Text(\"ok\")|Text(\"userflow\")|BigInt(250)|BigInt(3)|BigInt({commits})|BigInt(250)|BigInt(0)|BigInt(3)|Null|Boolean(true)|Boolean(true)")
    );
    assert!(
        rows[0].starts_with("Text(\"failed\")|Text(\"userflow\")|BigInt(100)|BigInt(2)|BigInt(1)|BigInt(0)|BigInt(100)|BigInt(1)|BigInt(1)|Boolean(false)"),
        "{}",
        rows[0]
    );
}

/// Rescans that find rows as they were.
mod unchanged {
    use super::*;

    crate::dests::for_every_destination_async!(
        unchanged_rows_are_not_rewritten_and_changed_ones_are,
        a_rescan_resumed_after_a_failure_spares_the_rows_it_saw_before,
    );

    /// [`sync`] into `kind` (a Delta lake is not told from its path).
    async fn sync(
        pg: &etl::playground::Playground,
        db: &std::path::Path,
        extra: Value,
        rows: u64,
    ) -> etl::Result<etl::SyncSummary> {
        let mut o = opts(rows);
        if db.ends_with("delta") {
            o.format = Some(etl::OutputFormat::Delta);
        }
        etl::sync("userflow", config(pg, extra), db, o).await
    }

    /// Each user's `_synced_at` (microseconds), by id.
    fn synced_at(db: &std::path::Path) -> std::collections::BTreeMap<String, i64> {
        let conn = crate::dests::reader(db);
        let mut stmt = conn
            .prepare("SELECT id, epoch_us(_synced_at) FROM users")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// The live data files of the users table (none for DuckDB).
    fn user_files(kind: Kind, db: &std::path::Path) -> std::collections::BTreeSet<String> {
        let table = db.join("userflow").join("users");
        match kind {
            Kind::DuckDb => Default::default(),
            Kind::Delta => crate::dests::delta_live_files(&table).into_iter().collect(),
            Kind::Parquet => walkdir(&table)
                .into_iter()
                .filter(|p| p.ends_with(".parquet"))
                .collect(),
        }
    }

    fn walkdir(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
        out
    }

    async fn unchanged_rows_are_not_rewritten_and_changed_ones_are(kind: Kind) {
        let pg = playground(2_000).await;
        let (_d, db) = tmp_for(kind);
        // Commits every 500 rows: several files.
        let s = sync(&pg, &db, json!({}), 500).await.unwrap();
        assert_eq!(s.tables["users"].inserted, 2_000);
        let stamped = synced_at(&db);
        let files = user_files(kind, &db);
        assert!(kind == Kind::DuckDb || files.len() > 1, "{files:?}");
        // DuckDB: a row deleted and inserted again gets a new rowid.
        let rowids = || match kind {
            Kind::DuckDb => {
                crate::dests::grid(&crate::dests::reader(&db), "SELECT id, rowid FROM users")
            }
            _ => Vec::new(),
        };
        let before = rowids();

        // Nothing changed at the source: no row and no file is written.
        let s = sync(&pg, &db, json!({}), 500).await.unwrap();
        let c = s.tables["users"];
        assert_eq!(
            (c.inserted, c.updated, c.deleted, c.unchanged),
            (0, 0, 0, 2_000)
        );
        assert_eq!(synced_at(&db), stamped, "every row kept its sync time");
        assert_eq!(rowids(), before, "no row was deleted and inserted again");
        assert_eq!(user_files(kind, &db), files, "no file was rewritten");
        assert_eq!(read_users(&db), expected_users(&pg));

        // One user changed, one deleted, one added: only those are written.
        let users = pg.userflow().users();
        let mut attrs = Map::new();
        attrs.insert("email".into(), json!("changed@example.com"));
        pg.userflow().upsert(&users[1_234].id, attrs);
        assert!(pg.userflow().delete(&users[10].id));
        let mut attrs = Map::new();
        attrs.insert("email".into(), json!("new@example.com"));
        pg.userflow().upsert("zzzz-new-user", attrs);
        let s = sync(&pg, &db, json!({}), 500).await.unwrap();
        let c = s.tables["users"];
        assert_eq!(
            (c.inserted, c.updated, c.deleted, c.unchanged),
            (1, 1, 1, 1_998)
        );
        assert_eq!(live(read_users(&db)), expected_users(&pg));
        let now = synced_at(&db);
        for (id, at) in &stamped {
            if id == &users[1_234].id || id == &users[10].id {
                continue;
            }
            assert_eq!(now[id], *at, "{id} was rewritten");
        }
        assert!(now[&users[1_234].id] > stamped[&users[1_234].id]);
        if kind != Kind::DuckDb {
            // The files holding the changed and the deleted user are rewritten, no other.
            let after = user_files(kind, &db);
            let kept = files.intersection(&after).count();
            assert!(
                kept < files.len() && kept + 2 >= files.len(),
                "{files:?} → {after:?}"
            );
        }

        // Again with no change: the seen keys of the last scan were used up by
        // its sweep, and this scan's own spare every live row.
        let s = sync(&pg, &db, json!({}), 500).await.unwrap();
        let c = s.tables["users"];
        assert_eq!(
            (c.inserted, c.updated, c.deleted, c.unchanged),
            (0, 0, 0, 2_000)
        );
        assert_eq!(live(read_users(&db)), expected_users(&pg));
    }

    async fn a_rescan_resumed_after_a_failure_spares_the_rows_it_saw_before(kind: Kind) {
        let pg = playground(1_000).await;
        let (_d, db) = tmp_for(kind);
        sync(&pg, &db, json!({}), 250).await.unwrap();
        let users = pg.userflow().users();
        assert!(pg.userflow().delete(&users[900].id));
        // The rescan commits after pages 3 and 6, then page 8 is malformed.
        pg.fault_at(pg.requests() + 8, Fault::Malformed);
        sync(&pg, &db, json!({}), 250).await.unwrap_err();
        // Resumed in another run: the 600 rows seen unchanged before the
        // failure were never rewritten, and are not taken for unseen.
        let s = sync(&pg, &db, json!({}), 250).await.unwrap();
        let c = s.tables["users"];
        assert_eq!((c.inserted, c.updated, c.deleted), (0, 0, 1), "{c:?}");
        assert_eq!(live(read_users(&db)), expected_users(&pg));
        assert_eq!(
            query_i64(&db, "SELECT count(*) FROM users WHERE NOT _etl_deleted"),
            999
        );
    }
}
