//! Prefect against the playground mock: full sync vs ground truth, incremental
//! changes, rows added during a scan, concurrency in flight, resume after a
//! crash, and each error the issue names.

use std::path::Path;
use std::time::Duration;

use etl::config::ConfigReader;
use etl::playground::{Fault, Playground, PlaygroundOptions};
use serde_json::{json, Value};

use crate::common::*;
use crate::dests::{for_both_destinations_async, grid, reader, Kind};

async fn prefect_playground(flow_runs: usize, latency_ms: u64) -> Playground {
    playground_with(PlaygroundOptions {
        users: 0,
        flow_runs,
        latency: Duration::from_millis(latency_ms),
        ..Default::default()
    })
    .await
}

fn cfg(pg: &Playground, extra: Value) -> ConfigReader {
    let mut c = pg.prefect_config();
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    ConfigReader::from_map(c.as_object().unwrap().clone())
}

async fn sync_prefect(pg: &Playground, out: &Path, extra: Value) -> etl::Result<etl::SyncSummary> {
    etl::sync("prefect", cfg(pg, extra), out, opts(500)).await
}

/// `id|name|updated` of every live row of `table`, sorted.
fn table_rows(out: &Path, table: &str) -> Vec<String> {
    grid(
        &reader(out),
        &format!("SELECT id, name, epoch_us(updated) FROM {table} WHERE NOT _etl_deleted"),
    )
}

/// The same from the mock.
fn truth(pg: &Playground, objects: &str) -> Vec<String> {
    let mut v: Vec<String> = pg
        .prefect()
        .all(objects)
        .iter()
        .map(|r| format!("Text({:?})|Text({:?})|BigInt({})", r.id, r.name, r.updated))
        .collect();
    v.sort();
    v
}

fn assert_exact(pg: &Playground, out: &Path) {
    for t in ["flows", "flow_runs", "deployments"] {
        assert_eq!(table_rows(out, t), truth(pg, t), "table {t}");
    }
}

for_both_destinations_async!(full_sync_then_incremental_changes);

async fn full_sync_then_incremental_changes(kind: Kind) {
    let pg = prefect_playground(1_234, 0).await;
    let (_d, out) = tmp_for(kind);
    let s = sync_prefect(&pg, &out, json!({"batch_size": 100}))
        .await
        .unwrap();
    assert_eq!(
        (
            s.tables["flows"].inserted,
            s.tables["flow_runs"].inserted,
            s.tables["deployments"].inserted
        ),
        (40, 1_234, 25)
    );
    assert_exact(&pg, &out);
    let conn = reader(&out);
    // Types as declared, and raw is the object the API sent.
    let types = grid(
        &conn,
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'flow_runs' \
         AND column_name IN ('start_time', 'parameters', 'state_type')",
    );
    assert_eq!(
        types,
        vec![
            "Text(\"parameters\")|Text(\"JSON\")",
            "Text(\"start_time\")|Text(\"TIMESTAMP WITH TIME ZONE\")",
            "Text(\"state_type\")|Text(\"VARCHAR\")",
        ]
    );
    let run = &pg.prefect().all("flow_runs")[7];
    let raw: String = conn
        .query_row(
            &format!(
                "SELECT CAST(raw AS VARCHAR) FROM flow_runs WHERE id = '{}'",
                run.id
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), run.json);
    drop(conn);

    // Changes: a renamed flow, a run that finished, new runs, a deleted deployment.
    let flows = pg.prefect().all("flows");
    let runs = pg.prefect().all("flow_runs");
    let deps = pg.prefect().all("deployments");
    assert!(pg
        .prefect()
        .modify("flows", &flows[3].id, json!({"name": "renamed"})));
    assert!(pg.prefect().modify(
        "flow_runs",
        &runs[100].id,
        json!({"name": "finished-now", "state_type": "COMPLETED", "state_name": "Completed"})
    ));
    let added = pg.prefect().add_flow_runs(5);
    assert!(pg.prefect().remove("deployments", &deps[2].id));

    let s = sync_prefect(&pg, &out, json!({"batch_size": 100}))
        .await
        .unwrap();
    assert_eq!(s.tables["flow_runs"].inserted, 5);
    assert_eq!(
        s.tables["flow_runs"].updated, 1,
        "only the changed old run is rewritten"
    );
    assert!(s.tables["flows"].updated >= 1);
    assert_eq!(s.tables["deployments"].deleted, 1);
    assert_exact(&pg, &out);
    let conn = reader(&out);
    let n: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM flow_runs WHERE id IN ('{}')",
                added.join("','")
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 5);
    let state: String = conn
        .query_row(
            &format!(
                "SELECT state_type FROM flow_runs WHERE id = '{}'",
                runs[100].id
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(state, "COMPLETED");
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_are_fetched_concurrently_up_to_the_limit() {
    let pg = prefect_playground(3_000, 20).await;
    let (_d, out) = tmp();
    sync_prefect(&pg, &out, json!({"concurrency": 4, "batch_size": 100}))
        .await
        .unwrap();
    // 30 pages of runs, four at a time; three endpoints at once (each with
    // its count alongside).
    assert_eq!(pg.take_max_in_flight_on("/flow_runs/filter"), 4);
    let max = pg.take_max_in_flight();
    assert!((5..=15).contains(&max), "{max} requests in flight");
    assert_exact(&pg, &out);
    sync_prefect(&pg, &out, json!({"concurrency": 1, "batch_size": 100}))
        .await
        .unwrap();
    assert_eq!(pg.take_max_in_flight_on("/flow_runs/filter"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_added_during_a_scan_are_read_by_the_next_sync() {
    let pg = std::sync::Arc::new(prefect_playground(2_000, 5).await);
    let (_d, out) = tmp();
    let adder = {
        let pg = pg.clone();
        tokio::spawn(async move {
            // Past the first pages of every endpoint (and their counts),
            // with most run pages still to read.
            while pg.requests() < 30 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            pg.prefect().add_flow_runs(37)
        })
    };
    sync_prefect(&pg, &out, json!({"batch_size": 50, "concurrency": 8}))
        .await
        .unwrap();
    adder.await.unwrap();
    let state = saved_prefect_state(&out);
    assert!(
        state["streams"]["flow_runs"].get("cursor_us").is_none(),
        "an unstable first scan sets no cursor: {state}"
    );
    sync_prefect(&pg, &out, json!({"batch_size": 50}))
        .await
        .unwrap();
    assert_exact(&pg, &out);
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_deleted_during_a_scan_leave_it_unstable() {
    let pg = std::sync::Arc::new(prefect_playground(2_000, 5).await);
    let (_d, out) = tmp();
    sync_prefect(&pg, &out, json!({"batch_size": 50}))
        .await
        .unwrap();
    let runs = saved_prefect_state(&out)["streams"]["flow_runs"].clone();
    assert_eq!(runs["stable"], json!(true), "{runs}");
    let cursor = runs["cursor_us"].clone();
    assert!(cursor.is_i64(), "a stable scan sets the cursor");
    // The runs read first (ID_DESC): deleting them moves every later row one
    // place ahead, so without the page overlap a row would fall between two
    // pages unnoticed.
    let mut ids: Vec<String> = pg
        .prefect()
        .all("flow_runs")
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    let first: Vec<String> = ids.iter().rev().take(3).cloned().collect();
    let start = pg.requests();
    let remover = {
        let pg = pg.clone();
        tokio::spawn(async move {
            while pg.requests() < start + 20 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for id in &first {
                assert!(pg.prefect().remove("flow_runs", id));
            }
        })
    };
    sync_prefect(&pg, &out, json!({"batch_size": 50, "concurrency": 4}))
        .await
        .unwrap();
    remover.await.unwrap();
    let runs = &saved_prefect_state(&out)["streams"]["flow_runs"];
    assert_eq!(runs["stable"], json!(false), "{runs}");
    assert_eq!(
        runs["cursor_us"], cursor,
        "an unstable scan keeps the cursor"
    );
    // The next scan is stable; every run the server has is there, and the
    // deleted ones stay as history.
    sync_prefect(&pg, &out, json!({"batch_size": 50}))
        .await
        .unwrap();
    let runs = &saved_prefect_state(&out)["streams"]["flow_runs"];
    assert_eq!(runs["stable"], json!(true), "{runs}");
    let stored = table_rows(&out, "flow_runs");
    let live = truth(&pg, "flow_runs");
    assert_eq!(stored.len(), live.len() + 3);
    assert!(live.iter().all(|r| stored.binary_search(r).is_ok()));
}

fn saved_prefect_state(db: &Path) -> Value {
    let conn = ::duckdb::Connection::open(db).unwrap();
    let s: String = conn
        .query_row(
            "SELECT CAST(state AS VARCHAR) FROM prefect._etl_state WHERE connector = 'prefect'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str(&s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_stopped_midway_resumes_from_its_last_ordered_checkpoint() {
    let pg = prefect_playground(4_000, 10).await;
    let (_d, out) = tmp();
    let stats = std::sync::Arc::new(etl::RunStats::default());
    let mut fut = Box::pin(etl::sync_with(
        "prefect",
        cfg(&pg, json!({"batch_size": 50, "concurrency": 2})),
        &out,
        opts(1),
        stats.clone(),
    ));
    // Run until a few commits happened (whatever the machine's speed), then drop it.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while stats.committed().commits < 3 {
        tokio::select! {
            r = fut.as_mut() => panic!("the sync ended before it was stopped: {r:?}"),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        assert!(std::time::Instant::now() < until, "no commit within 60 s");
    }
    drop(fut);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while etl::engine::active_writers() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let committed = query_i64(&out, "SELECT count(*) FROM flow_runs");
    let offset = saved_prefect_state(&out)["streams"]["flow_runs"]["scan"]["offset"]
        .as_i64()
        .unwrap();
    assert!(committed > 0 && committed < 4_000, "{committed}");
    // Streams commit together, so a commit can hold one page of runs whose
    // checkpoint had not arrived yet; it never records a page not committed.
    assert!(
        offset <= committed && committed - offset <= 50,
        "offset {offset}, {committed} rows committed"
    );
    let before = pg.requests();
    sync_prefect(&pg, &out, json!({"batch_size": 50}))
        .await
        .unwrap();
    assert!(
        pg.requests() - before < 80 + 10,
        "resumed, not restarted ({} requests)",
        pg.requests() - before
    );
    assert_exact(&pg, &out);
    assert_eq!(
        query_i64(&out, "SELECT count(*) - count(DISTINCT id) FROM flow_runs"),
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_locked_database_are_retried() {
    let pg = prefect_playground(500, 0).await;
    let (_d, out) = tmp();
    pg.fault_at(
        2,
        Fault::Status {
            status: 429,
            retry_after: Some("0.05".into()),
            body: r#"{"detail": "Rate limit exceeded"}"#.into(),
        },
    );
    pg.fault_at(
        4,
        Fault::Status {
            status: 503,
            retry_after: None,
            body: r#"{"exception_message": "Service Unavailable"}"#.into(),
        },
    );
    let s = sync_prefect(&pg, &out, json!({"batch_size": 100}))
        .await
        .unwrap();
    assert_eq!(s.retries, 2);
    assert_exact(&pg, &out);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_key_the_detail_or_skip_a_missing_endpoint() {
    let pg = prefect_playground(300, 0).await;
    let (_d, out) = tmp();
    let mut c = pg.prefect_config();
    c["api_key"] = json!("pnu_wrong_key_123456");
    let e = etl::sync(
        "prefect",
        ConfigReader::from_map(c.as_object().unwrap().clone()),
        &out,
        opts(100),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("api_key") && e.contains("401") && !e.contains("pnu_wrong_key_123456"),
        "{e}"
    );

    // The real server's 422 shape: the message carries the validation detail.
    pg.fault_on(
        "/flow_runs/filter",
        Fault::Status {
            status: 422,
            retry_after: None,
            body: r#"{"exception_message": "Invalid request received.", "exception_detail": [{"type": "enum", "loc": ["body", "sort"], "msg": "Input should be 'CREATED_DESC'"}]}"#.into(),
        },
    );
    let e = sync_prefect(&pg, &out, json!({"concurrency": 1}))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("body.sort: Input should be 'CREATED_DESC'"),
        "{e}"
    );

    // A 404 on one endpoint (an older server, a workspace without it) skips that table.
    let (_d2, out2) = tmp();
    pg.fault_on(
        "/deployments/filter",
        Fault::Status {
            status: 404,
            retry_after: None,
            body: r#"{"detail": "Not Found"}"#.into(),
        },
    );
    // (One page at a time, so the fault meets the endpoint's first page.)
    let s = sync_prefect(&pg, &out2, json!({"concurrency": 1}))
        .await
        .unwrap();
    let inserted = |t: &str| s.tables.get(t).map_or(0, |c| c.inserted);
    assert!(
        s.tables.contains_key("deployments"),
        "a table with no changes is listed too"
    );
    assert_eq!(
        (
            inserted("flows"),
            inserted("flow_runs"),
            inserted("deployments")
        ),
        (40, 300, 0),
        "{:?}",
        s.tables
    );

    // An api_url with a typo: every endpoint 404s, which is an error, not "0 rows".
    let (_d3, out3) = tmp();
    let e = sync_prefect(&pg, &out3, json!({"api_url": format!("{}/apii", pg.url())}))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("every endpoint (flows, flow_runs, deployments) answered 404")
            && msg.contains("/apii"),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn configuration_errors_name_the_key_and_range() {
    for (extra, says) in [
        (
            json!({"batch_size": 201}),
            "\"batch_size\": must be an integer from 1 to 200, got 201",
        ),
        (
            json!({"concurrency": 0}),
            "\"concurrency\": must be an integer from 1 to 64, got 0",
        ),
        (
            json!({"api_url": "<YOUR_PREFECT_API_URL>"}),
            "\"api_url\": still holds a placeholder",
        ),
        (
            json!({"api_url": "ftp://x"}),
            "\"api_url\": must be an http:// or https:// URL",
        ),
        (json!({"bacth_size": 5}), "unknown key \"bacth_size\""),
    ] {
        let mut c = json!({"api_url": "http://127.0.0.1:9/api"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let (_d, out) = tmp();
        let e = etl::sync(
            "prefect",
            ConfigReader::from_map(c.as_object().unwrap().clone()),
            &out,
            opts(1),
        )
        .await
        .unwrap_err();
        assert!(e.is_user_error(), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
}
