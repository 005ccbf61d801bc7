//! The declarative REST connector against the built-in playground's mock of
//! Fivetran's api playground: the cases the real one cannot show (data that
//! changes, timestamps that collide at a keyset boundary, quoted CSV, OAuth2,
//! the SDK examples that call no API), and bad specs.

use std::path::Path;

use etl::config::ConfigReader;
use etl::playground::{Fault, Playground, PlaygroundOptions};
use serde_json::{json, Value};

use crate::common::opts;
use crate::dests::{for_both_destinations_async, grid, reader, Kind};
use crate::fivetran::{expected_users, spec_path, stored_users, sync_rest};

async fn pg() -> Playground {
    Playground::start(PlaygroundOptions::default())
        .await
        .unwrap()
}

async fn sync_spec(pg: &Playground, spec: &str, out: &Path) -> etl::Result<etl::SyncSummary> {
    sync_rest(spec, pg.rest_config(), out).await
}

async fn sync_shipped(pg: &Playground, name: &str, out: &Path) -> etl::Result<etl::SyncSummary> {
    sync_spec(pg, &spec_path(name), out).await
}

fn truth(pg: &Playground) -> Vec<String> {
    expected_users(&pg.fivetran().users_snapshot(), |v| v.to_string())
}

/// Make the users at sorted positions `from..=to` (by updatedAt) share one updatedAt.
fn collide(pg: &Playground, from: usize, to: usize) {
    let mut users = pg.fivetran().users.lock().unwrap();
    users.sort_by(|a, b| a["updatedAt"].as_str().cmp(&b["updatedAt"].as_str()));
    let t = users[from]["updatedAt"].clone();
    for u in users[from..=to].iter_mut() {
        u["updatedAt"] = t.clone();
    }
}

for_both_destinations_async!(
    keyset_boundary_items_are_not_lost,
    incremental_resync_picks_up_only_changes,
    quoted_csv_with_newlines_bom_and_crlf_lands_exactly,
    sdk_three_operations,
    priority_first_reads_the_newest_window_first_then_backfills_across_syncs,
    a_late_write_is_read_within_the_replay_window,
    truncate_soft_deletes_what_a_full_read_no_longer_returns,
    truncate_deletes_with_the_last_page_and_never_after_a_partial_read,
    a_list_without_a_key_follows_the_next_url,
    a_changed_declared_type_is_widened_or_refused,
);

/// Items 48..=52 (sorted) share one updatedAt: the scroll token after the
/// first page of 50 skips the two after the boundary. Following the token
/// loses them (shown with a spec that does); the shipped spec resumes from
/// the cursor and lands all 200.
async fn keyset_boundary_items_are_not_lost(kind: Kind) {
    let pg = pg().await;
    collide(&pg, 47, 52);
    let dir = tempfile::tempdir().unwrap();
    // The token alone: the playground's bug shows.
    let naive = dir.path().join("naive.toml");
    let text = std::fs::read_to_string(spec_path("fivetran_keyset"))
        .unwrap()
        .replace("resume_from_cursor = true", "resume_from_cursor = false");
    std::fs::write(&naive, text).unwrap();
    let lossy = kind.path(&dir.path().join("lossy"));
    std::fs::create_dir_all(dir.path().join("lossy")).unwrap();
    sync_spec(&pg, naive.to_str().unwrap(), &lossy)
        .await
        .unwrap();
    assert_eq!(
        stored_users(&lossy, "").len(),
        197,
        "the scroll token skips the 3 items after the boundary"
    );
    // The shipped spec.
    let out = kind.path(dir.path());
    sync_shipped(&pg, "fivetran_keyset", &out).await.unwrap();
    assert_eq!(stored_users(&out, ""), truth(&pg));
}

/// Three users change: the next sync sends the saved cursor and reads only
/// them (and the rows sharing the old cursor, the filter being inclusive).
async fn incremental_resync_picks_up_only_changes(kind: Kind) {
    let pg = pg().await;
    for spec in [
        "fivetran_offset",
        "fivetran_page_number",
        "fivetran_next_page_url",
        "fivetran_keyset",
        "fivetran_timestamp",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = kind.path(dir.path());
        sync_shipped(&pg, spec, &out).await.unwrap();
        assert_eq!(stored_users(&out, ""), truth(&pg), "{spec}");
        let users = pg.fivetran().users_snapshot();
        let max = users
            .iter()
            .map(|u| u["updatedAt"].as_str().unwrap().to_string())
            .max()
            .unwrap();
        let later = etl::playground::fivetran::ts(chrono::Utc::now().timestamp() + 60);
        for i in [3, 90, 150] {
            pg.fivetran()
                .edit_user(i, &format!("Changed by {spec}"), Some(&later));
        }
        // Changed, or sharing the saved cursor (the filter is inclusive).
        let since = pg
            .fivetran()
            .users_snapshot()
            .iter()
            .filter(|u| u["updatedAt"].as_str().unwrap() >= max.as_str())
            .count() as u64;
        let s = sync_shipped(&pg, spec, &out).await.unwrap();
        assert_eq!(s.rows, since, "{spec}");
        assert!(since <= 3 + 4, "{spec}: {since}");
        assert_eq!(stored_users(&out, ""), truth(&pg), "{spec}");
        // Put the data back for the next spec.
        for i in [3, 90, 150] {
            pg.fivetran().edit_user(i, "Reset", Some(&max));
        }
    }
}

/// The mock's export is RFC 4180 with a BOM and CRLF: names with commas,
/// addresses with newlines, jobs with quotes come back exactly.
async fn quoted_csv_with_newlines_bom_and_crlf_lands_exactly(kind: Kind) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    let cfg = pg.config_for("csv_export").unwrap();
    let s = etl::sync(
        "csv_export",
        ConfigReader::from_map(cfg.as_object().unwrap().clone()),
        &out,
        opts(50),
    )
    .await
    .unwrap();
    assert_eq!(s.rows, 200);
    let stored = stored_users(&out, "");
    assert_eq!(stored, truth(&pg));
    assert!(
        stored.iter().any(|r| r.contains("\\n")) && stored.iter().any(|r| r.contains("\\\"")),
        "{stored:?}"
    );
    // A user gone from the export is soft-deleted by the next sync.
    pg.fivetran().users.lock().unwrap().remove(0);
    etl::sync(
        "csv_export",
        ConfigReader::from_map(cfg.as_object().unwrap().clone()),
        &out,
        opts(50),
    )
    .await
    .unwrap();
    assert_eq!(stored_users(&out, "WHERE NOT _etl_deleted"), truth(&pg));
    assert_eq!(
        grid(
            &reader(&out),
            "SELECT count(*) FROM \"user\" WHERE _etl_deleted"
        ),
        vec!["BigInt(1)"]
    );
}

/// three_operations: upsert 3, update one's val1 only, delete another.
async fn sdk_three_operations(kind: Kind) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    sync_shipped(&pg, "sdk_three_operations", &out)
        .await
        .unwrap();
    assert_eq!(
        grid(
            &reader(&out),
            "SELECT right(id, 1), val1, val2, _etl_deleted FROM three"
        ),
        vec![
            "Text(\"0\")|Text(\"00000000-0000-4000-8000-000000000000\")|BigInt(0)|Boolean(false)",
            "Text(\"1\")|Text(\"abc\")|BigInt(1)|Boolean(false)",
            "Text(\"2\")|Text(\"00000000-0000-4000-8000-000000000002\")|BigInt(2)|Boolean(true)",
        ]
    );
}

/// The `(updated_since, updated_until)` of each `/sdk/events` request since `from`.
fn windows_since(pg: &Playground, from: usize) -> Vec<(i64, i64)> {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
    pg.fivetran().event_requests.lock().unwrap()[from..]
        .iter()
        .map(|(a, b)| (t(a), t(b)))
        .collect()
}

fn event_ids(out: &Path) -> Vec<i64> {
    grid(&reader(out), "SELECT id FROM event ORDER BY id")
        .iter()
        .map(|r| {
            r.trim_start_matches("BigInt(")
                .trim_end_matches(')')
                .parse()
                .unwrap()
        })
        .collect()
}

fn window_state(out: &Path) -> (i64, i64, i64) {
    let s = crate::common::saved_state_of(out, "rest").unwrap();
    let t = |k: &str| {
        let v = s["streams"]["event"][k]
            .as_str()
            .unwrap_or_else(|| panic!("no {k} in {s}"));
        chrono::DateTime::parse_from_rfc3339(v).unwrap().timestamp()
    };
    (
        t("incremental_cursor"),
        t("historical_cursor"),
        t("historical_limit"),
    )
}

/// priority_first_sync: one event per hour over 5 days. The first sync reads
/// the newest day, then two day-wide windows back (backfill_windows_per_sync
/// = 2); the next syncs go on back from where the last stopped until 6 days
/// before the first sync, each window once; then only new data is read.
async fn priority_first_reads_the_newest_window_first_then_backfills_across_syncs(kind: Kind) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    let day = 86_400;
    let (first_hour, last_hour) = pg.fivetran().event_hours();
    let all: Vec<i64> = (first_hour..=last_hour).collect();

    let s = sync_shipped(&pg, "sdk_priority_first", &out).await.unwrap();
    let w = windows_since(&pg, 0);
    assert_eq!(w.len(), 3, "{w:?}");
    let (forward, history, limit) = window_state(&out);
    // Newest first: the day up to now, then back one day at a time.
    assert_eq!(w[0], (forward - day, forward));
    assert_eq!(w[1], (forward - 2 * day, forward - day));
    assert_eq!(w[2], (forward - 3 * day, forward - 2 * day));
    assert_eq!((history, limit), (forward - 3 * day, forward - 6 * day));
    let read: Vec<i64> = all
        .iter()
        .copied()
        .filter(|h| h * 3600 >= history)
        .collect();
    assert_eq!(event_ids(&out), read);
    assert_eq!(s.rows, read.len() as u64);

    // Second sync: anything new since the first, then the next two days back.
    let s = sync_shipped(&pg, "sdk_priority_first", &out).await.unwrap();
    let w2 = windows_since(&pg, 3);
    let backfill: Vec<&(i64, i64)> = w2.iter().filter(|(a, _)| *a < forward).collect();
    assert_eq!(
        backfill,
        vec![
            &(history - day, history),
            &(history - 2 * day, history - day)
        ],
        "{w2:?}"
    );
    assert!(
        w2.iter().all(|(a, b)| *a >= forward || *b <= history),
        "no window read twice: {w2:?}"
    );
    let (_, history2, limit2) = window_state(&out);
    assert_eq!(
        (history2, limit2),
        (history - 2 * day, limit),
        "the limit is fixed at the first sync"
    );
    assert_eq!(
        s.rows as usize,
        all.iter()
            .filter(|h| **h * 3600 >= history2 && **h * 3600 < history)
            .count()
    );

    // Third: the last day of history; every event is there once.
    sync_shipped(&pg, "sdk_priority_first", &out).await.unwrap();
    let (_, history3, _) = window_state(&out);
    assert_eq!(history3, limit);
    assert_eq!(event_ids(&out), all);

    // History complete: a sync reads forward only.
    let (forward4, _, _) = window_state(&out);
    let n = pg.fivetran().event_requests.lock().unwrap().len();
    sync_shipped(&pg, "sdk_priority_first", &out).await.unwrap();
    assert!(
        windows_since(&pg, n).iter().all(|(a, _)| *a >= forward4),
        "{:?}",
        windows_since(&pg, n)
    );
    assert_eq!(event_ids(&out), all);
}

/// replay_sync: a record written after the last sync with an updatedAt half
/// an hour before the saved cursor (replication lag) is missed by the plain
/// timestamp spec and read by the replay spec, whose next sync asks from an
/// hour before the cursor.
async fn a_late_write_is_read_within_the_replay_window(kind: Kind) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let (plain, replay) = (
        kind.path(&dir.path().join("plain")),
        kind.path(&dir.path().join("replay")),
    );
    std::fs::create_dir_all(dir.path().join("plain")).unwrap();
    std::fs::create_dir_all(dir.path().join("replay")).unwrap();
    sync_shipped(&pg, "fivetran_timestamp", &plain)
        .await
        .unwrap();
    sync_shipped(&pg, "fivetran_replay", &replay).await.unwrap();
    let users = pg.fivetran().users_snapshot();
    let max = users
        .iter()
        .map(|u| u["updatedAt"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    let t = chrono::DateTime::parse_from_rfc3339(&max)
        .unwrap()
        .timestamp();
    let late = users
        .iter()
        .position(|u| u["updatedAt"].as_str().unwrap() < max.as_str())
        .unwrap();
    pg.fivetran().edit_user(
        late,
        "Written late",
        Some(&etl::playground::fivetran::ts(t - 1800)),
    );
    sync_shipped(&pg, "fivetran_timestamp", &plain)
        .await
        .unwrap();
    sync_shipped(&pg, "fivetran_replay", &replay).await.unwrap();
    let jobs = |out: &Path| {
        grid(
            &reader(out),
            "SELECT count(*) FROM \"user\" WHERE job = 'Written late'",
        )
    };
    assert_eq!(
        jobs(&plain),
        vec!["BigInt(0)"],
        "the plain timestamp spec misses it"
    );
    assert_eq!(jobs(&replay), vec!["BigInt(1)"]);
    assert_eq!(stored_users(&replay, ""), truth(&pg));
}

/// The shipped offset spec with its `incremental` line replaced by `with`, in `dir`.
fn truncated_spec(dir: &Path, with: &str) -> std::path::PathBuf {
    let spec = dir.join("truncated.toml");
    let text = std::fs::read_to_string(spec_path("fivetran_offset")).unwrap();
    let inc = text
        .lines()
        .find(|l| l.starts_with("incremental = "))
        .unwrap();
    std::fs::write(&spec, text.replace(inc, with)).unwrap();
    spec
}

/// `truncate = true` (the SDK's op.truncate): each sync reads the table in
/// full, then soft-deletes the rows it did not see; a user gone from the
/// source stays soft-deleted, the others are live, none duplicated.
async fn truncate_soft_deletes_what_a_full_read_no_longer_returns(kind: Kind) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = truncated_spec(dir.path(), "truncate = true");
    let out = kind.path(dir.path());
    sync_spec(&pg, spec.to_str().unwrap(), &out).await.unwrap();
    assert_eq!(stored_users(&out, ""), truth(&pg));
    let gone = pg.fivetran().users.lock().unwrap().remove(7);
    let s = sync_spec(&pg, spec.to_str().unwrap(), &out).await.unwrap();
    assert_eq!(s.rows, 199);
    assert_eq!(stored_users(&out, "WHERE NOT _etl_deleted"), truth(&pg));
    let deleted = grid(&reader(&out), "SELECT id FROM \"user\" WHERE _etl_deleted");
    assert_eq!(
        deleted,
        vec![format!("Text({:?})", gone["id"].as_str().unwrap())]
    );
    assert_eq!(
        grid(&reader(&out), "SELECT count(*) FROM \"user\""),
        vec!["BigInt(200)"]
    );
}

/// A truncated table's soft-deletes are committed with its last page, never
/// before: a read that fails part-way (here with a commit after every page)
/// deletes nothing; a complete one commits once per page, the last page
/// together with the deletions (no commit of its own).
async fn truncate_deletes_with_the_last_page_and_never_after_a_partial_read(kind: Kind) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    // One page at a time, so the failing request is the third page.
    let spec = truncated_spec(dir.path(), "truncate = true\nconcurrency = 1");
    let out = kind.path(dir.path());
    let run = |out: std::path::PathBuf| {
        let mut config = pg.rest_config();
        config["spec"] = json!(spec.to_str().unwrap());
        let c = ConfigReader::from_map(config.as_object().unwrap().clone());
        async move { etl::sync("rest", c, &out, opts(1)).await }
    };
    let first = run(out.clone()).await.unwrap();
    // Parquet counts the rows it holds only once committed, so its deletion
    // guard commits the last page just before the deletions are counted.
    let commits = 4 + u64::from(matches!(kind, Kind::Parquet));
    assert_eq!((first.pages, first.commits), (4, commits), "{first:?}");
    let gone = pg.fivetran().users.lock().unwrap().remove(7);
    pg.fault_at(pg.requests() + 3, Fault::Malformed);
    let e = run(out.clone()).await.unwrap_err();
    assert!(e.to_string().contains("offset=100"), "{e}");
    assert_eq!(
        grid(
            &reader(&out),
            "SELECT count(*) FROM \"user\" WHERE _etl_deleted"
        ),
        vec!["BigInt(0)"],
        "a partial read deletes nothing"
    );
    let s = run(out.clone()).await.unwrap();
    assert_eq!((s.pages, s.commits), (4, commits), "{s:?}");
    let deleted = grid(&reader(&out), "SELECT id FROM \"user\" WHERE _etl_deleted");
    assert_eq!(
        deleted,
        vec![format!("Text({:?})", gone["id"].as_str().unwrap())]
    );
}

/// large_data_set/with_pagination: PokeAPI's list, the next page's URL in
/// `next`, no key: every row once, keyed by its SDK hash, twice synced.
async fn a_list_without_a_key_follows_the_next_url(kind: Kind) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    let before = pg.requests();
    let s = sync_shipped(&pg, "sdk_large_data_set", &out).await.unwrap();
    let n = etl::playground::fivetran::POKEMON as u64;
    assert_eq!(s.rows, n);
    assert_eq!(pg.requests() - before, n.div_ceil(100), "100 per page");
    sync_shipped(&pg, "sdk_large_data_set", &out).await.unwrap();
    assert_eq!(
        grid(&reader(&out), "SELECT count(*), count(DISTINCT _etl_id), count(DISTINCT name), min(length(_etl_id)) FROM pokemons"),
        vec![format!("BigInt({n})|BigInt({n})|BigInt({n})|BigInt(40)")]
    );
    // The key is the SHA-1 of the record as the SDK serialises it.
    let first = etl::playground::fivetran::pokemon_name(0);
    let base = url::Url::parse(&pg.url()).unwrap();
    let (host, port) = (base.host_str().unwrap(), base.port().unwrap());
    let record =
        format!("{{\"name\": \"{first}\", \"url\": \"http://{host}:{port}/sdk/pokemon/1/\"}}");
    let want = {
        use sha1::Digest as _;
        hex::encode(sha1::Sha1::digest(record.as_bytes()))
    };
    assert_eq!(
        grid(
            &reader(&out),
            &format!("SELECT _etl_id FROM pokemons WHERE name = '{first}'")
        ),
        vec![format!("Text(\"{want}\")")]
    );
}

/// A source failing mid-backfill: the windows read before the failure stay
/// committed with their cursors, and the next sync resumes at the window
/// that failed, reading none twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_stopped_by_an_error_resumes_at_its_window() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.duckdb");
    let spec = dir.path().join("all_at_once.toml");
    let text = std::fs::read_to_string(spec_path("sdk_priority_first")).unwrap();
    assert!(text.contains("backfill_windows_per_sync = 2"));
    std::fs::write(&spec, text.replace("backfill_windows_per_sync = 2", "")).unwrap();
    let (first_hour, last_hour) = pg.fivetran().event_hours();
    let fails = &pg.fivetran().events_fail_before_hour;
    fails.store(last_hour - 60, std::sync::atomic::Ordering::SeqCst);
    let sync = |every: u64| {
        let mut c = pg.rest_config();
        c["spec"] = json!(spec.to_str().unwrap());
        etl::sync(
            "rest",
            ConfigReader::from_map(c.as_object().unwrap().clone()),
            &out,
            opts(every),
        )
    };
    let e = sync(1).await.unwrap_err().to_string();
    assert!(
        e.contains("400") && e.contains("/sdk/events") && e.contains("not available"),
        "{e}"
    );
    // The newest day and the next were read; the third failed. The cursors
    // are committed with a window's rows or at the next commit after it, so
    // the state says one or two windows were done (a window read again is
    // merged by key).
    let (forward, history, _) = window_state(&out);
    assert!(
        history == forward - 86_400 || history == forward - 2 * 86_400,
        "{}",
        forward - history
    );
    let stored = event_ids(&out);
    let kept: Vec<i64> = (first_hour..=last_hour)
        .filter(|h| h * 3600 >= history)
        .collect();
    assert!(
        kept.iter().all(|h| stored.contains(h))
            && stored.iter().all(|h| h * 3600 >= forward - 2 * 86_400),
        "{stored:?}"
    );
    let n = pg.fivetran().event_requests.lock().unwrap().len();
    fails.store(i64::MIN, std::sync::atomic::Ordering::SeqCst);
    sync(1_000_000).await.unwrap();
    let w = windows_since(&pg, n);
    let backfill: Vec<&(i64, i64)> = w.iter().filter(|(a, _)| *a < forward).collect();
    assert_eq!(
        backfill[0],
        &(history - 86_400, history),
        "resumed at the failed window: {w:?}"
    );
    assert!(
        w.iter().all(|(a, b)| *a >= forward || *b <= history),
        "{w:?}"
    );
    assert_eq!(
        event_ids(&out),
        (first_hour..=last_hour).collect::<Vec<_>>()
    );
}

/// Offset and page-number specs whose first page gives the total fetch the
/// other pages `concurrency` at a time (default 4), handled in order: every
/// row once, the cursor the highest updatedAt; `concurrency = 1` one at a time.
#[tokio::test(flavor = "multi_thread")]
async fn pages_are_fetched_concurrently_once_the_total_is_known() {
    let pg = Playground::start(PlaygroundOptions {
        fivetran_users: 1000,
        latency: std::time::Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .unwrap();
    let max = pg
        .fivetran()
        .users_snapshot()
        .iter()
        .map(|u| u["updatedAt"].as_str().unwrap().to_string())
        .max()
        .unwrap();
    for (spec, path) in [
        ("fivetran_offset", "/pagination/offset"),
        ("fivetran_page_number", "/pagination/page_number"),
    ] {
        for concurrency in [None, Some(1), Some(8)] {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("spec.toml");
            let mut text = std::fs::read_to_string(spec_path(spec)).unwrap();
            if let Some(c) = concurrency {
                text = text.replace(
                    "records = \"data\"",
                    &format!("records = \"data\"\nconcurrency = {c}"),
                );
            }
            std::fs::write(&file, text).unwrap();
            let out = dir.path().join("w.duckdb");
            pg.take_max_in_flight_on(path);
            let before = pg.requests();
            let s = sync_spec(&pg, file.to_str().unwrap(), &out).await.unwrap();
            let in_flight = pg.take_max_in_flight_on(path);
            assert_eq!(
                (s.rows, pg.requests() - before),
                (1000, 20),
                "{spec} {concurrency:?}"
            );
            assert_eq!(stored_users(&out, ""), truth(&pg), "{spec} {concurrency:?}");
            let state = crate::common::saved_state_of(&out, "rest").unwrap();
            assert_eq!(
                state["streams"]["user"]["cursor"],
                json!(max),
                "{spec} {concurrency:?}"
            );
            let want = concurrency.unwrap_or(4) as u64;
            if want == 1 {
                assert_eq!(in_flight, 1, "{spec}");
            } else {
                assert!(
                    in_flight >= 2 && in_flight <= want,
                    "{spec} {concurrency:?}: {in_flight} in flight"
                );
            }
        }
    }
}

/// A new playground and DuckDB file, the shipped spec `name` synced into it.
async fn synced_into_duckdb(name: &str) -> (Playground, tempfile::TempDir, std::path::PathBuf) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.duckdb");
    sync_shipped(&pg, name, &out).await.unwrap();
    (pg, dir, out)
}

/// The DuckDB type of each column of `table`.
fn types(out: &Path, table: &str) -> Vec<String> {
    grid(
        &reader(out),
        &format!("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = '{table}'"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn specified_types_land_with_their_declared_types() {
    let (_pg, _dir, out) = synced_into_duckdb("sdk_specified_types").await;
    let t = types(&out, "specified");
    for want in [
        "_bool\")|Text(\"BOOLEAN",
        "_short\")|Text(\"SMALLINT",
        "_long\")|Text(\"BIGINT",
        "_dec\")|Text(\"DECIMAL(15,2)",
        "_float\")|Text(\"FLOAT",
        "_double\")|Text(\"DOUBLE",
        "_ndate\")|Text(\"DATE",
        "_ndatetime\")|Text(\"TIMESTAMP",
        "_utc\")|Text(\"TIMESTAMP WITH TIME ZONE",
        "_binary\")|Text(\"BLOB",
        "_xml\")|Text(\"VARCHAR",
        "_str\")|Text(\"VARCHAR",
        "_json\")|Text(\"JSON",
        "_null\")|Text(\"VARCHAR",
    ] {
        assert!(
            t.iter().any(|r| r.ends_with(&format!("{want}\")"))),
            "{want} not in {t:?}"
        );
    }
    assert_eq!(
        grid(
            &reader(&out),
            "SELECT _bool, _short, _long, CAST(_dec AS VARCHAR), _float, _double, CAST(_ndate AS VARCHAR), CAST(_ndatetime AS VARCHAR), epoch_ms(_utc), hex(_binary), _xml, _str, CAST(_json AS VARCHAR), _null FROM specified"
        ),
        vec!["Boolean(true)|SmallInt(15)|BigInt(132353453453635)|Text(\"105.34\")|Float(10.4)|Double(0.0001)|Text(\"2007-12-03\")|Text(\"2007-12-03 10:15:30\")|BigInt(1196676930123)|Text(\"00010203\")|Text(\"<tag>This is XML</tag>\")|Text(\"This is a string\")|Text(\"{\\\"a\\\":10}\")|Null"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unspecified_types_are_inferred_and_kept_across_syncs() {
    let (pg, _dir, out) = synced_into_duckdb("sdk_unspecified_types").await;
    let t = types(&out, "unspecified");
    for want in [
        "id\")|Text(\"BIGINT",
        "_bool\")|Text(\"BOOLEAN",
        "_short\")|Text(\"BIGINT",
        "_long\")|Text(\"BIGINT",
        // As the SDK 3.0 tester types the same JSON: text by its shape,
        // JSON floats as FLOAT, bytes (base64 text) as text.
        "_dec\")|Text(\"DOUBLE",
        "_float\")|Text(\"FLOAT",
        "_double\")|Text(\"FLOAT",
        "_ndate\")|Text(\"DATE",
        "_ndatetime\")|Text(\"TIMESTAMP",
        "_utc\")|Text(\"TIMESTAMP WITH TIME ZONE",
        "_binary\")|Text(\"VARCHAR",
        "_json\")|Text(\"JSON",
    ] {
        assert!(
            t.iter().any(|r| r.ends_with(&format!("{want}\")"))),
            "{want} not in {t:?}"
        );
    }
    // `_null` was never seen with a value: no column yet.
    assert!(!t.iter().any(|r| r.contains("_null")), "{t:?}");
    let state = crate::common::saved_state_of(&out, "rest").unwrap();
    assert_eq!(
        state["streams"]["unspecified"]["inferred"]["_float"], "FLOAT",
        "{state}"
    );
    sync_shipped(&pg, "sdk_unspecified_types", &out)
        .await
        .unwrap();
    assert_eq!(
        grid(
            &reader(&out),
            "SELECT count(*), any_value(_short), any_value(_str) FROM unspecified"
        ),
        vec!["BigInt(1)|BigInt(15)|Text(\"This is a string\")"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_without_a_key_get_the_sdk_hash() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.duckdb");
    sync_shipped(&pg, "sdk_hashes", &out).await.unwrap();
    sync_shipped(&pg, "sdk_hashes", &out).await.unwrap();
    assert_eq!(
        grid(&reader(&out), "SELECT _etl_id FROM sdk_hashes.\"user\""),
        [
            "9507eb591ddb60eb68452d06cf70696d8d5e8140",
            "7d09ec9c2cfa02549a329a36fcd0221b1ea020ab",
            "f01ca16d545bf1af5a8bbce87acc622101e1a992",
            "a211fe507efd31c94e30e91fc8883b4a68605d3d",
            "aa1f248cbe6e71e1f36db2f09c5b68a2fbe3febb",
        ]
        .iter()
        .map(|h| format!("Text(\"{h}\")"))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    // hello: one row, the same key every sync; in a schema of its own
    // (each spec's tables land in the schema named after it).
    sync_shipped(&pg, "sdk_hello", &out).await.unwrap();
    sync_shipped(&pg, "sdk_hello", &out).await.unwrap();
    assert_eq!(
        grid(
            &reader(&out),
            "SELECT count(*), any_value(message) FROM sdk_hello.hello"
        ),
        vec!["BigInt(1)|Text(\"hello, world!\")"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_composite_key_with_updated_at_keeps_each_version() {
    let (_pg, _dir, out) = synced_into_duckdb("sdk_records_with_no_created_at").await;
    assert_eq!(
        grid(&reader(&out), "SELECT id, designation FROM \"user\""),
        vec![
            "Int(123)|Text(\"Manager\")",
            "Int(123)|Text(\"Senior Manager\")",
            "Int(456)|Text(\"VP\")"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rows_are_quarantined_in_the_same_commit() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.duckdb");
    sync_shipped(&pg, "sdk_quarantine", &out).await.unwrap();
    assert_eq!(
        grid(
            &reader(&out),
            "SELECT id, CAST(amount AS VARCHAR) FROM payment"
        ),
        vec!["Text(\"1\")|Text(\"10.50\")", "Text(\"3\")|Text(\"7.00\")"]
    );
    let rejects = grid(
        &reader(&out),
        "SELECT table_name, raw, error FROM _etl_rejects",
    );
    assert_eq!(rejects.len(), 1, "{rejects:?}");
    assert!(
        rejects[0].contains("payment")
            && rejects[0].contains("not a number")
            && rejects[0].contains("amount"),
        "{rejects:?}"
    );
    // The same spec failing instead: names the table, column, row and URL; nothing committed.
    let strict = dir.path().join("strict.toml");
    std::fs::write(
        &strict,
        std::fs::read_to_string(spec_path("sdk_quarantine"))
            .unwrap()
            .replace("\"quarantine\"", "\"fail\""),
    )
    .unwrap();
    let out2 = dir.path().join("w2.duckdb");
    let e = sync_spec(&pg, strict.to_str().unwrap(), &out2)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("table payment")
            && e.contains("column amount")
            && e.contains("row 1")
            && e.contains("/sdk/bad_rows"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_refresh_token_and_client_credentials() {
    let pg = pg().await;
    for spec in ["oauth2_refresh_token", "oauth2_client_credentials"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("w.duckdb");
        let before = pg
            .fivetran()
            .token_requests
            .load(std::sync::atomic::Ordering::SeqCst);
        let s = sync_shipped(&pg, spec, &out)
            .await
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(s.rows, 20, "{spec}");
        assert_eq!(
            pg.fivetran()
                .token_requests
                .load(std::sync::atomic::Ordering::SeqCst)
                - before,
            1,
            "{spec}: one token request"
        );
        let state = crate::common::saved_state_of(&out, "rest")
            .unwrap()
            .to_string();
        assert!(
            !state.contains(etl::playground::fivetran::CLIENT_SECRET) && !state.contains("at-"),
            "{state}"
        );
    }
    // A refresh token the server refuses: the error says so, without the token.
    let dir = tempfile::tempdir().unwrap();
    let mut c = pg.rest_config();
    c["spec"] = json!(spec_path("oauth2_refresh_token"));
    c["refresh_token"] = json!("rt-revoked-zzzz");
    let e = etl::sync(
        "rest",
        ConfigReader::from_map(c.as_object().unwrap().clone()),
        &dir.path().join("w.duckdb"),
        opts(100),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("400") && e.contains("invalid_grant") && !e.contains("rt-revoked-zzzz"),
        "{e}"
    );
}

/// A bad spec stops before any request, naming the file and the key path.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_spec_is_refused_before_any_request() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("paginator = { type = \"offset\", offset_param = \"offset\", limit_param = \"limit\", limit = 50, total_field = \"total\" }", "paginator = { type = \"offset\", limit = \"many\" }", "tables[0].paginator.limit"),
        ("records = \"data\"", "records = \"data\"\nprimary_key_ = \"id\"", "tables[0].primary_key_: unknown key"),
        ("cursor_field = \"updatedAt\"", "cursor_fild = \"updatedAt\"", "tables[0].incremental.cursor_field: is required"),
        ("ascending = true", "ascending = true, lookback = 5", "tables[0].incremental.lookback: unknown key"),
        ("[[tables]]", "[auth]\ntype = \"bearer\"\ntoken = \"${nope}\"\n\n[[tables]]", "${nope} is not set"),
    ];
    for (from, to, want) in cases {
        let spec = dir.path().join("bad.toml");
        let text = std::fs::read_to_string(spec_path("fivetran_offset")).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&spec, text.replacen(from, to, 1)).unwrap();
        let before = pg.requests();
        let out = dir.path().join("w.duckdb");
        let e = sync_spec(&pg, spec.to_str().unwrap(), &out)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(want) && e.contains("bad.toml"),
            "want {want:?}: {e}"
        );
        assert_eq!(pg.requests(), before, "{want}");
        assert!(!out.exists(), "{want}: the destination is not created");
    }
    let _: Value = json!(null);
}

/// A cursor field no record has would leave the table never incremental,
/// silently: it is a spec error naming the field and the fields there are.
#[tokio::test(flavor = "multi_thread")]
async fn a_cursor_field_no_record_has_is_an_error() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("typo.toml");
    let text = std::fs::read_to_string(spec_path("fivetran_offset")).unwrap();
    std::fs::write(
        &spec,
        text.replace(
            "cursor_field = \"updatedAt\"",
            "cursor_field = \"updated_at\"",
        ),
    )
    .unwrap();
    let out = dir.path().join("w.duckdb");
    let e = sync_spec(&pg, spec.to_str().unwrap(), &out)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("table user: incremental.cursor_field \"updated_at\" is in none of the")
            && msg.contains("updatedAt")
            && msg.contains("typo.toml"),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 2);
}

/// A declared type that differs from the column's: widened where every old
/// value fits (DuckDB alters the column; a Parquet dataset, whose files are
/// not rewritten, refuses), refused where they would not fit — never ignored.
async fn a_changed_declared_type_is_widened_or_refused(kind: Kind) {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    let text = std::fs::read_to_string(spec_path("fivetran_offset")).unwrap();
    let declared = |ty: &str| {
        let p = dir.path().join(format!("{ty}.toml"));
        std::fs::write(
            &p,
            text.replace(
                "updatedAt = \"UTC_DATETIME\"",
                &format!("updatedAt = \"{ty}\""),
            ),
        )
        .unwrap();
        p.display().to_string()
    };
    sync_spec(&pg, &declared("UTC_DATETIME"), &out)
        .await
        .unwrap();
    let widened = sync_spec(&pg, &declared("STRING"), &out).await;
    match kind {
        Kind::Delta => unreachable!("run for DuckDB and Parquet only"),
        Kind::DuckDb => {
            widened.unwrap();
            assert_eq!(
                grid(&reader(&out), "SELECT data_type FROM information_schema.columns WHERE table_name = 'user' AND column_name = 'updatedAt'"),
                vec!["Text(\"VARCHAR\")"]
            );
            let e = sync_spec(&pg, &declared("UTC_DATETIME"), &out)
                .await
                .unwrap_err();
            assert!(
                e.to_string().contains("table user, column updatedAt: it holds STRING values and is now declared UTC_DATETIME, which cannot hold them all"),
                "{e}"
            );
            assert_eq!(e.exit_code(), 2);
            assert_eq!(
                grid(
                    &reader(&out),
                    "SELECT count(*), count(DISTINCT id) FROM \"user\""
                ),
                vec!["BigInt(200)|BigInt(200)"]
            );
        }
        Kind::Parquet => {
            let e = widened.unwrap_err();
            assert!(
                e.to_string().contains("column updatedAt: it holds UTC_DATETIME values and is now declared STRING, and a Parquet dataset's files are not rewritten"),
                "{e}"
            );
            assert_eq!(e.exit_code(), 2);
            assert_eq!(stored_users(&out, ""), truth(&pg));
        }
    }
}

/// `rate_limit = { requests_per_second = 2 }`: the Egnyte mock answers
/// more than 2 calls in a second with 403 (not retried by a spec), so the
/// spec succeeds only because every request waits for its slot.
#[tokio::test(flavor = "multi_thread")]
async fn a_spec_rate_limit_keeps_every_request_within_the_budget() {
    let pg = Playground::start(PlaygroundOptions {
        egnyte: etl::playground::egnyte::EgnyteOptions {
            users: 40,
            qps: Some(2),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = |limit: &str| {
        let path = dir.path().join(format!("egnyte{}.toml", limit.len()));
        let text = format!(
            "name = \"egnyte_users\"\nbase_url = \"{}\"\n{limit}\n\
             [auth]\ntype = \"bearer\"\ntoken = \"${{api_token}}\"\n\n\
             [[tables]]\nname = \"users\"\npath = \"/pubapi/v2/users\"\nrecords = \"resources\"\n\
             primary_key = \"id\"\npaginator = {{ type = \"scim\", count = 10 }}\n",
            pg.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let run = |spec: std::path::PathBuf, out: std::path::PathBuf| {
        let config = json!({"spec": spec.to_str().unwrap(), "api_token": pg.api_key()});
        let c = ConfigReader::from_map(config.as_object().unwrap().clone());
        async move { etl::sync("rest", c, &out, opts(1_000_000)).await }
    };
    let started = std::time::Instant::now();
    let s = run(
        spec("rate_limit = { requests_per_second = 2 }"),
        dir.path().join("a.duckdb"),
    )
    .await
    .unwrap();
    assert_eq!((s.rows, s.requests), (40, 4), "{s:?}");
    assert_eq!(pg.egnyte().over_qps(), 0);
    // Four requests two a second: the last starts 1.5 s after the first.
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    // Without the budget the same spec is refused by the server.
    let e = run(spec(""), dir.path().join("b.duckdb"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
    assert!(pg.egnyte().over_qps() > 0);
    // A budget needs a rate or the server's headers.
    let e = run(spec("rate_limit = { }"), dir.path().join("c.duckdb"))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("rate_limit.requests_per_second: is required unless remaining_header and reset_header are set"),
        "{e}"
    );
}

/// `rate_limit` with `remaining_header`/`reset_header`: when an answer says
/// no request is left, every request waits for the reset, so none is spent
/// on a 429; without them the server refuses the request past the budget.
#[tokio::test(flavor = "multi_thread")]
async fn a_budget_announced_in_headers_is_never_overdrawn() {
    let pg = pg().await;
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(spec_path("fivetran_offset")).unwrap();
    let with = dir.path().join("with.toml");
    std::fs::write(
        &with,
        text.replace(
            "[[tables]]",
            "rate_limit = { remaining_header = \"X-RateLimit-Remaining\", reset_header = \"X-RateLimit-Reset\" }\n\n[[tables]]",
        )
        .replace("total_field = \"total\" }", "total_field = \"total\" }\nconcurrency = 1"),
    )
    .unwrap();
    // 200 users, 50 a page: 4 requests against a budget of 3 every 2 s.
    pg.fivetran()
        .set_rate_budget(3, std::time::Duration::from_secs(2));
    let s = sync_spec(&pg, with.to_str().unwrap(), &dir.path().join("a.duckdb"))
        .await
        .unwrap();
    assert_eq!((s.rows, s.requests, s.retries), (200, 4, 0), "{s:?}");
    let throttled = |pg: &Playground| {
        pg.fivetran()
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(throttled(&pg), 0);
    pg.fivetran()
        .set_rate_budget(3, std::time::Duration::from_secs(60));
    let e = sync_shipped(&pg, "fivetran_offset", &dir.path().join("b.duckdb"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("429"), "{e}");
    assert!(throttled(&pg) > 0);
}
