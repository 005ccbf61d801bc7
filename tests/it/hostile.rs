//! A hostile source: pages of the wrong shape, empty pages that say more,
//! next links that point back, keys that are objects, strings that are not
//! Unicode, credentials echoed or sent elsewhere. Each must end in an error
//! that names the URL (or a quarantined row), never in deleted rows, a loop,
//! an unreadable table or a leaked secret; the destination stays as it was
//! at its last commit.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etl::playground::{Fault, Playground, PlaygroundOptions};
use etl::Error;
use serde_json::{json, Value};

use crate::common::*;
use crate::dests::{for_both_destinations_async, grid, reader, Kind};

for_both_destinations_async!(
    a_body_of_the_wrong_shape_is_an_error_naming_the_url,
    an_empty_page_that_says_has_more_deletes_nothing,
    a_next_page_url_pointing_back_is_an_error_not_a_loop,
    an_object_as_primary_key_is_a_type_error_naming_the_row,
    a_lone_surrogate_is_an_error_and_nothing_unreadable_is_written,
    losing_most_rows_at_once_is_refused_until_allowed,
    malformed_pages_never_panic_and_leave_the_destination_as_committed,
);

/// Rewrite the JSON of a mock's answer.
fn edit(f: impl Fn(&mut Value) + Send + Sync + 'static) -> Fault {
    Fault::Edit(Arc::new(move |body: &[u8]| {
        let mut v: Value = serde_json::from_slice(body).expect("the mock answers JSON");
        f(&mut v);
        v.to_string().into_bytes()
    }))
}

fn live_users(db: &Path) -> i64 {
    query_i64(db, "SELECT count(*) FROM users WHERE NOT _etl_deleted")
}

/// `(rows, live rows, newest _synced_at)`: equal before and after a failed
/// sync when nothing it did was kept.
fn fingerprint(db: &Path, table: &str) -> Vec<String> {
    grid(
        &reader(db),
        &format!(
            "SELECT count(*), count(*) FILTER (WHERE NOT _etl_deleted), max(epoch_us(_synced_at)) FROM \"{table}\""
        ),
    )
}

async fn a_body_of_the_wrong_shape_is_an_error_naming_the_url(kind: Kind) {
    let pg = playground(250).await;
    let (_d, db) = tmp_for(kind);
    sync(&pg, &db, json!({}), 1_000_000).await.unwrap();
    let before = fingerprint(&db, "users");
    pg.push_fault(Fault::Body("[[]]".into()));
    let e = sync(&pg, &db, json!({}), 1_000_000).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("expected an object with \"data\" and \"has_more\", got an array")
            && msg.contains(&format!("{}/users?limit=100", pg.url())),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 1);
    assert_eq!(fingerprint(&db, "users"), before);
    assert_eq!(live_users(&db), 250);
}

async fn an_empty_page_that_says_has_more_deletes_nothing(kind: Kind) {
    let pg = playground(250).await;
    let (_d, db) = tmp_for(kind);
    sync(&pg, &db, json!({}), 1_000_000).await.unwrap();
    let before = fingerprint(&db, "users");
    // The second page comes back empty, still saying more follow.
    pg.fault_at(
        pg.requests() + 2,
        edit(|v| {
            v["data"] = json!([]);
            v["has_more"] = json!(true);
        }),
    );
    let e = sync(&pg, &db, json!({}), 1_000_000).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("the page is empty but says has_more: true")
            && msg.contains("starting_after="),
        "{msg}"
    );
    assert_eq!(fingerprint(&db, "users"), before);
    assert_eq!(live_users(&db), 250);
}

async fn a_next_page_url_pointing_back_is_an_error_not_a_loop(kind: Kind) {
    let pg = playground(250).await;
    let (_d, db) = tmp_for(kind);
    // Every page after the first links back to the first.
    for n in 2..=20 {
        pg.fault_at(n, edit(|v| v["next_page_url"] = json!("/users?limit=100")));
    }
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        sync(&pg, &db, json!({}), 1_000_000),
    )
    .await
    .expect("pagination terminates")
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("pagination loops") && msg.contains("/users?limit=100"),
        "{msg}"
    );
    assert!(pg.requests() <= 3, "{} requests", pg.requests());

    // The same in a REST spec that follows next_page_url.
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    let first = format!("{}/pagination/next_page_url?page=1&per_page=50", pg.url());
    for n in 1..=20 {
        let first = first.clone();
        pg.fault_at(n, edit(move |v| v["next_page_url"] = json!(first)));
    }
    let spec = crate::fivetran::spec_path("fivetran_next_page_url");
    let e = tokio::time::timeout(
        Duration::from_secs(60),
        crate::fivetran::sync_rest(&spec, pg.rest_config(), &out),
    )
    .await
    .expect("pagination terminates")
    .unwrap_err();
    assert!(e.to_string().contains("pagination loops"), "{e}");
    assert!(pg.requests() <= 4, "{} requests", pg.requests());
}

async fn an_object_as_primary_key_is_a_type_error_naming_the_row(kind: Kind) {
    let pg = playground(250).await;
    let (_d, db) = tmp_for(kind);
    sync(&pg, &db, json!({}), 1_000_000).await.unwrap();
    let before = fingerprint(&db, "users");
    pg.push_fault(edit(|v| v["data"][3]["id"] = json!({"a": 1})));
    let e = sync(&pg, &db, json!({}), 1_000_000).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("table users, column id, row 3: a primary key must be a string or a number, got an object")
            && msg.contains(&format!("[from {}/users?limit=100]", pg.url())),
        "{msg}"
    );
    assert_eq!(fingerprint(&db, "users"), before);

    // Under quarantine the row goes to _etl_rejects and the rest land.
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    let spec = dir.path().join("q.toml");
    let text = std::fs::read_to_string(crate::fivetran::spec_path("fivetran_offset")).unwrap();
    std::fs::write(
        &spec,
        text.replace("[[tables]]\n", "[[tables]]\non_bad_row = \"quarantine\"\n"),
    )
    .unwrap();
    pg.push_fault(edit(|v| v["data"][0]["id"] = json!(true)));
    let s = crate::fivetran::sync_rest(spec.to_str().unwrap(), pg.rest_config(), &out)
        .await
        .unwrap();
    assert_eq!(s.rejected, 1);
    let rejects = grid(&reader(&out), "SELECT error FROM _etl_rejects");
    assert!(
        rejects[0].contains("column id: a primary key must be a string or a number, got a boolean"),
        "{rejects:?}"
    );
}

async fn a_lone_surrogate_is_an_error_and_nothing_unreadable_is_written(kind: Kind) {
    let pg = playground(250).await;
    let (_d, db) = tmp_for(kind);
    sync(&pg, &db, json!({}), 1_000_000).await.unwrap();
    let before = fingerprint(&db, "users");
    // A string escape the JSON text allows and Unicode does not.
    pg.push_fault(Fault::Edit(Arc::new(|body: &[u8]| {
        let text = String::from_utf8(body.to_vec()).unwrap();
        text.replacen("\"name\":\"", "\"name\":\"\\ud800", 1)
            .into_bytes()
    })));
    let e = sync(&pg, &db, json!({}), 1_000_000).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("table users, column raw, row 0: invalid Unicode: the escape \\ud800")
            && msg.contains("/users?limit=100"),
        "{msg}"
    );
    assert!(matches!(e, Error::Decode(_)), "{e:?}");
    // Still readable, as committed.
    assert_eq!(fingerprint(&db, "users"), before);
    assert_eq!(
        grid(
            &reader(&db),
            "SELECT count(*) FROM users WHERE json_valid(raw)"
        ),
        vec!["BigInt(250)"]
    );

    // A REST table without a raw column: the string column itself refuses it.
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = kind.path(dir.path());
    pg.push_fault(Fault::Edit(Arc::new(|body: &[u8]| {
        let text = String::from_utf8(body.to_vec()).unwrap();
        text.replacen("\"job\":\"", "\"job\":\"\\udc00", 1)
            .into_bytes()
    })));
    let spec = crate::fivetran::spec_path("fivetran_offset");
    let e = crate::fivetran::sync_rest(&spec, pg.rest_config(), &out)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("table user, column job, row 0: invalid Unicode: the escape \\udc00")
            && msg.contains("/pagination/offset"),
        "{msg}"
    );
}

async fn losing_most_rows_at_once_is_refused_until_allowed(kind: Kind) {
    let pg = playground(250).await;
    let (_d, db) = tmp_for(kind);
    sync(&pg, &db, json!({}), 1_000_000).await.unwrap();
    let ids: Vec<String> = pg.userflow().users().iter().map(|u| u.id.clone()).collect();
    for id in &ids[..150] {
        assert!(pg.userflow().delete(id));
    }
    let e = sync(&pg, &db, json!({}), 1_000_000).await.unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("table users: the scan did not see 150 of 250 live rows (60%); nothing was soft-deleted")
            && msg.contains("--max-delete-fraction 1"),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 1);
    assert_eq!(live_users(&db), 250);
    // What was read is committed: the scan is complete in the state.
    assert!(saved_state(&db).unwrap()["streams"]["users"]["last_complete_scan_at"].is_string());
    // Allowed explicitly, the deletion goes through.
    let opts = etl::SyncOptions {
        max_delete_fraction: 1.0,
        ..opts(1_000_000)
    };
    let s = etl::sync("userflow", config(&pg, json!({})), &db, opts)
        .await
        .unwrap();
    assert_eq!(s.tables["users"].deleted, 150);
    assert_eq!(live_users(&db), 100);
}

/// Pages a hostile or broken server might send, each instead of a real one.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let huge = format!(
        r#"{{"data": [{{"id": "x", "name": "{}"}}], "has_more": true"#,
        "a".repeat(2 << 20)
    );
    vec![
        ("truncated", br#"{"data": [{"id": "a", "na"#.to_vec()),
        ("empty", Vec::new()),
        ("array", b"[[]]".to_vec()),
        ("string", br#""data""#.to_vec()),
        ("null", b"null".to_vec()),
        ("html", b"<html><body>Maintenance</body></html>".to_vec()),
        ("object without lists", br#"{"ok": true}"#.to_vec()),
        (
            "lists that are objects",
            br#"{"data": {}, "resources": {}, "notes": {}, "has_more": false, "totalResults": 3}"#
                .to_vec(),
        ),
        (
            "records that are numbers",
            br#"{"data": [1, 2], "resources": [1, 2], "has_more": false, "totalResults": 2}"#
                .to_vec(),
        ),
        (
            "invalid escape",
            br#"{"data": [{"id": "\x"}], "has_more": false}"#.to_vec(),
        ),
        (
            "lone surrogate",
            br#"[{"id": "\ud800", "name": "\ud800"}]"#.to_vec(),
        ),
        ("deep nesting", deep.into_bytes()),
        ("huge unterminated", huge.into_bytes()),
        (
            "not UTF-8",
            b"{\"data\": [{\"id\": \"\xff\xfe\"}], \"has_more\": false}".to_vec(),
        ),
        (
            "NaN",
            br#"{"data": [{"id": NaN}], "has_more": false}"#.to_vec(),
        ),
    ]
}

/// Every malformed page through every connector's page handling: an error
/// naming the URL, never a panic, and nothing kept past the last commit.
async fn malformed_pages_never_panic_and_leave_the_destination_as_committed(kind: Kind) {
    let pg = playground_with(PlaygroundOptions {
        users: 30,
        flow_runs: 30,
        egnyte: etl::playground::egnyte::EgnyteOptions {
            users: 30,
            qps: None,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Connector, configuration, table checked, the path whose page is replaced.
    let mut rest = pg.rest_config();
    rest["spec"] = json!(crate::fivetran::spec_path("fivetran_offset"));
    let cases: [(&str, Value, &str, &str); 5] = [
        ("userflow", pg.userflow_config(), "users", "/users"),
        (
            "prefect",
            pg.prefect_config(),
            "flow_runs",
            "/flow_runs/filter",
        ),
        ("egnyte", pg.egnyte_config(), "users", "/pubapi/v2/users"),
        (
            "csv_export",
            pg.config_for("csv_export").unwrap(),
            "user",
            "/export/csv",
        ),
        ("rest", rest, "user", "/pagination/offset"),
    ];
    for (connector, cfg, table, path) in cases {
        let out = kind.path(&dir.path().join(connector));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let run = || {
            let c = etl::config::ConfigReader::from_map(cfg.as_object().unwrap().clone());
            etl::sync(connector, c, &out, opts(1_000_000))
        };
        run().await.unwrap();
        let before = fingerprint(&out, table);
        for (name, body) in corpus() {
            let body = Arc::new(body);
            pg.fault_on(path, Fault::Edit(Arc::new(move |_| body.as_ref().clone())));
            let r = run().await;
            let e = match r {
                Err(e) => e,
                // A CSV export reads any bytes as text: a body that is not
                // the export's header is refused, and none of these is it.
                Ok(s) => panic!("{connector}, {name}: accepted ({s:?})"),
            };
            let msg = e.to_string();
            assert!(
                msg.contains(&pg.url()) && e.exit_code() == 1,
                "{connector}, {name}: the error names no URL: {msg}"
            );
            assert_eq!(
                fingerprint(&out, table),
                before,
                "{connector}, {name}: the destination changed ({msg})"
            );
        }
    }
}

/// A minimal server on another origin that records each request's head
/// and answers 401.
async fn recorder() -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                log.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_lowercase());
                let _ = s
                    .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .await;
            });
        }
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn credentials_are_sent_only_to_their_own_origin() {
    // Userflow's next_page_url names another host: followed without the key.
    let pg = playground(250).await;
    let (other, seen) = recorder().await;
    let next = format!("{other}/users?limit=100&starting_after=x");
    pg.push_fault(edit(move |v| v["next_page_url"] = json!(next)));
    let (_d, db) = tmp();
    let e = sync(&pg, &db, json!({}), 1_000_000).await.unwrap_err();
    assert!(e.to_string().contains("HTTP 401"), "{e}");
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(!heads[0].contains("authorization"), "{}", heads[0]);
    assert!(!heads[0].contains(&SECRET_KEY.to_lowercase()));

    // A REST key in a custom header does not follow a redirect to another host.
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let (other, seen) = recorder().await;
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("header_key.toml");
    std::fs::write(
        &spec,
        r#"name = "header_key"
base_url = "http://127.0.0.1:1"
[auth]
type = "api_key"
header = "X-Api-Key"
key = "${api_key}"
[[tables]]
name = "user"
path = "/pagination/offset"
records = "data"
primary_key = "id"
"#,
    )
    .unwrap();
    pg.push_fault(Fault::Redirect(format!("{other}/elsewhere")));
    let out = dir.path().join("w.duckdb");
    let e = crate::fivetran::sync_rest(spec.to_str().unwrap(), pg.rest_config(), &out)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!("{other}/elsewhere")) || e.to_string().contains("401"),
        "{e}"
    );
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(!heads[0].contains("x-api-key"), "{}", heads[0]);
    // A redirect within the origin is followed.
    pg.push_fault(Fault::Redirect(
        "/pagination/offset?limit=10&offset=0".into(),
    ));
    crate::fivetran::sync_rest(spec.to_str().unwrap(), pg.rest_config(), &out)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_redacted_in_every_encoding_before_any_cut() {
    // A server echoing the key at the start of a long error body.
    let pg = playground(10).await;
    let (_d, db) = tmp();
    let body = format!(
        r#"{{"error": {{"code": "unauthorized", "message": "key {SECRET_KEY} is not valid. {}"}}}}"#,
        "x".repeat(600)
    );
    pg.push_fault(Fault::Status {
        status: 401,
        retry_after: None,
        body,
    });
    let msg = sync(&pg, &db, json!({}), 1_000_000)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("key *** is not valid"), "{msg}");
    assert!(!msg.contains(&SECRET_KEY[..6]), "{msg}");

    // Basic credentials echoed as their base64 part only.
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.duckdb");
    let cfg = pg.rest_config();
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            cfg["username"].as_str().unwrap(),
            cfg["password"].as_str().unwrap()
        ))
    };
    pg.push_fault(Fault::Status {
        status: 403,
        retry_after: None,
        body: format!(r#"{{"detail": "credentials {b64} refused"}}"#),
    });
    let spec = crate::fivetran::spec_path("fivetran_auth_basic");
    let msg = crate::fivetran::sync_rest(&spec, cfg, &out)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("credentials *** refused"), "{msg}");
    assert!(!msg.contains(&b64[..8]), "{msg}");

    // A query-parameter key with characters URLs encode, in a failing URL.
    let key = "k+y/with=odd&chars==";
    let spec = dir.path().join("query_key.toml");
    std::fs::write(
        &spec,
        r#"name = "query_key"
base_url = "http://127.0.0.1:1"
retry_attempts = 1
[auth]
type = "api_key"
query_param = "api_key"
key = "${api_key}"
[[tables]]
name = "user"
path = "/pagination/offset"
records = "data"
primary_key = "id"
"#,
    )
    .unwrap();
    // Nothing listens on port 9: a transport error whose text has the URL.
    let cfg = json!({"base_url": "http://127.0.0.1:9", "api_key": key});
    let msg = crate::fivetran::sync_rest(spec.to_str().unwrap(), cfg, &out)
        .await
        .unwrap_err()
        .to_string();
    let form: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    for leaked in [key, form.as_str(), "with", "odd"] {
        assert!(!msg.contains(leaked), "{leaked} in {msg}");
    }
    assert!(msg.contains("127.0.0.1:9"), "{msg}");
}
