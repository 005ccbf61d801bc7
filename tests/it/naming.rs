//! Fivetran naming (the default): tables and columns as the Connector SDK's
//! tester names them, its system columns, its `_fivetran_id`; the naming
//! recorded per schema, and a sync with another one refused.

use std::path::Path;

use etl::config::ConfigReader;
use etl::playground::{Playground, PlaygroundOptions};
use etl::{Error, SyncOptions};
use serde_json::json;

use crate::common::*;
use crate::dests::{for_both_destinations_async, grid, reader, Kind};
use crate::fivetran::spec_path;

fn fivetran() -> SyncOptions {
    SyncOptions {
        naming: None,
        ..opts(1_000_000)
    }
}

async fn rest(
    pg: &Playground,
    spec: &str,
    out: &Path,
    o: SyncOptions,
) -> etl::Result<etl::SyncSummary> {
    let mut c = pg.rest_config();
    c["spec"] = json!(spec_path(spec));
    etl::sync(
        "rest",
        ConfigReader::from_map(c.as_object().unwrap().clone()),
        out,
        o,
    )
    .await
}

fn columns(out: &Path, table: &str) -> Vec<String> {
    grid(
        &reader(out),
        &format!(
            "SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' \
             AND table_schema = current_schema()"
        ),
    )
}

/// camelCase fields land snake_cased with the system columns; the cursor
/// (kept under the source's names) still makes the second sync incremental.
async fn camel_case_fields_land_snake_cased(kind: Kind) {
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let (_d, out) = tmp_for(kind);
    let s = rest(&pg, "fivetran_offset", &out, fivetran())
        .await
        .unwrap();
    assert_eq!(s.tables["user"].inserted, 200, "{s:?}");
    let cols = columns(&out, "user");
    for c in [
        "created_at",
        "updated_at",
        "_fivetran_synced",
        "_fivetran_deleted",
    ] {
        assert!(cols.contains(&format!("Text(\"{c}\")")), "{c} in {cols:?}");
    }
    for c in ["createdAt", "updatedAt", "_synced_at", "_etl_deleted"] {
        assert!(!cols.contains(&format!("Text(\"{c}\")")), "{c} in {cols:?}");
    }
    // In the spec's order, the system columns last, as the tester has them.
    assert_eq!(
        grid(
            &reader(&out),
            "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns \
             WHERE table_name = 'user' AND table_schema = current_schema()"
        ),
        vec!["Text(\"id,name,email,address,company,job,created_at,updated_at,_fivetran_deleted,_fivetran_synced\")"]
    );
    let r = reader(&out);
    assert_eq!(
        grid(&r, "SELECT count(*), count(DISTINCT id) FROM \"user\" WHERE NOT _fivetran_deleted AND updated_at IS NOT NULL"),
        vec!["BigInt(200)|BigInt(200)"]
    );
    let state = saved_state_of(&out, "rest").unwrap();
    assert!(state["streams"]["user"]["cursor"].is_string(), "{state}");
    let again = rest(&pg, "fivetran_offset", &out, fivetran())
        .await
        .unwrap();
    assert!(again.rows < 200, "incremental: {again:?}");
}

/// A table without a key is keyed by `_fivetran_id`, the tester's hash
/// (these values are what fivetran-connector-sdk 3.0.0 computes for the
/// same rows); a second sync of the same rows adds nothing.
async fn rows_without_a_key_get_the_testers_fivetran_id(kind: Kind) {
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let (_d, out) = tmp_for(kind);
    rest(&pg, "sdk_hashes", &out, fivetran()).await.unwrap();
    rest(&pg, "sdk_hashes", &out, fivetran()).await.unwrap();
    let ids = grid(&reader(&out), "SELECT _fivetran_id FROM \"user\"");
    assert_eq!(ids.len(), 5, "{ids:?}");
    for id in [
        "MNPSBOQ8SrMFb/ZR0aGpfptQgR8=",
        "NMaDAPC6qwhDVlGceYA9fUtqrlI=",
    ] {
        assert!(ids.contains(&format!("Text(\"{id}\")")), "{id} in {ids:?}");
    }
}

/// Soft deletes of unseen rows go through the renamed sync-time column.
async fn unseen_rows_are_flagged_in_fivetran_deleted(kind: Kind) {
    let pg = playground(300).await;
    let (_d, out) = tmp_for(kind);
    etl::sync("userflow", config(&pg, json!({})), &out, fivetran())
        .await
        .unwrap();
    let gone = pg.userflow().users()[7].id.clone();
    assert!(pg.userflow().delete(&gone));
    etl::sync("userflow", config(&pg, json!({})), &out, fivetran())
        .await
        .unwrap();
    assert_eq!(
        grid(
            &reader(&out),
            "SELECT id, _fivetran_deleted FROM users WHERE _fivetran_deleted OR id = 'x'"
        ),
        vec![format!("Text(\"{gone}\")|Boolean(true)")]
    );
    assert_eq!(live(read_users(&out)), expected_users(&pg));
}

/// The naming is the schema's: a later sync without --naming keeps it, one
/// with another is refused before anything is written; a schema written
/// before namings were recorded is source-named.
async fn a_schema_keeps_its_naming(kind: Kind) {
    let pg = playground(50).await;
    let (_d, out) = tmp_for(kind);
    etl::sync("userflow", config(&pg, json!({})), &out, fivetran())
        .await
        .unwrap();
    let e = etl::sync("userflow", config(&pg, json!({})), &out, opts(1_000_000))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Usage(_)), "{e:?}");
    assert!(
        e.to_string().contains(
            "was written with --naming fivetran; a sync with --naming source would mix both"
        ),
        "{e}"
    );
    // Source naming in its own schema; then syncs without --naming keep each schema's.
    let source = SyncOptions {
        schema: Some("raw".into()),
        ..opts(1_000_000)
    };
    etl::sync("userflow", config(&pg, json!({})), &out, source.clone())
        .await
        .unwrap();
    for schema in ["userflow", "raw"] {
        let o = SyncOptions {
            naming: None,
            schema: Some(schema.into()),
            ..opts(1_000_000)
        };
        etl::sync("userflow", config(&pg, json!({})), &out, o)
            .await
            .unwrap();
    }
    let r = reader(&out);
    assert_eq!(
        grid(
            &r,
            "SELECT count(*) FROM userflow.users WHERE NOT _fivetran_deleted"
        ),
        vec!["BigInt(50)"]
    );
    assert_eq!(
        grid(&r, "SELECT count(*) FROM raw.users WHERE NOT _etl_deleted"),
        vec!["BigInt(50)"]
    );
}

/// Undeclared fields are typed as the tester types them, and widen as it
/// widens them: a field first sent as booleans, then as integers, becomes
/// a LONG column (true → 1); text in a date's shape is a date. Parquet files
/// are not rewritten, so there the widening is refused with a message.
async fn inferred_columns_type_and_widen_as_the_tester_does(kind: Kind) {
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let (_d, out) = tmp_for(kind);
    let stamp = |secs: i64| json!(etl::playground::fivetran::ts(secs));
    {
        let mut users = pg.fivetran().users.lock().unwrap();
        for (i, u) in users.iter_mut().enumerate() {
            u["vip"] = json!(i % 2 == 0);
            u["since"] = json!("2024-02-29");
        }
    }
    rest(&pg, "fivetran_offset", &out, fivetran())
        .await
        .unwrap();
    let types = |out: &Path| {
        grid(
            &reader(out),
            "SELECT column_name || ' ' || data_type FROM information_schema.columns \
             WHERE table_name = 'user' AND column_name IN ('vip', 'since') AND table_schema = current_schema()",
        )
    };
    assert_eq!(
        types(&out),
        ["Text(\"since DATE\")", "Text(\"vip BOOLEAN\")"]
    );
    // Ten users come back with a number: the column widens to LONG.
    {
        let now = chrono::Utc::now().timestamp();
        let mut users = pg.fivetran().users.lock().unwrap();
        for u in users.iter_mut().take(10) {
            u["vip"] = json!(7);
            u["updatedAt"] = stamp(now);
        }
    }
    let second = rest(&pg, "fivetran_offset", &out, fivetran()).await;
    match kind {
        Kind::Delta => unreachable!("run for DuckDB and Parquet only"),
        Kind::DuckDb => {
            second.unwrap();
            assert_eq!(
                types(&out),
                ["Text(\"since DATE\")", "Text(\"vip BIGINT\")"]
            );
            assert_eq!(
                grid(
                    &reader(&out),
                    "SELECT vip, count(*) FROM \"user\" GROUP BY 1"
                ),
                [
                    "BigInt(0)|BigInt(95)",
                    "BigInt(1)|BigInt(95)",
                    "BigInt(7)|BigInt(10)"
                ]
            );
        }
        Kind::Parquet => {
            let e = second.unwrap_err().to_string();
            assert!(
                e.contains("column vip: it holds BOOLEAN values and is now declared LONG"),
                "{e}"
            );
        }
    }
}

/// `--partition-by` names a column as it lands (`created_at`, from the
/// source's `createdAt`).
#[tokio::test(flavor = "multi_thread")]
async fn partitions_are_named_by_the_landed_column() {
    let pg = Playground::start(PlaygroundOptions::default())
        .await
        .unwrap();
    let (_d, out) = tmp_for(Kind::Parquet);
    let mut o = fivetran();
    o.parquet.partition_overrides.insert(
        "user".into(),
        Some(etl::schema::Partitioning::parse("created_at:year").unwrap()),
    );
    rest(&pg, "fivetran_offset", &out, o).await.unwrap();
    let dirs: Vec<String> = std::fs::read_dir(out.join("fivetran_offset").join("user"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !dirs.is_empty() && dirs.iter().all(|d| d.starts_with("created_at_year=")),
        "{dirs:?}"
    );
}

for_both_destinations_async!(
    inferred_columns_type_and_widen_as_the_tester_does,
    camel_case_fields_land_snake_cased,
    rows_without_a_key_get_the_testers_fivetran_id,
    unseen_rows_are_flagged_in_fivetran_deleted,
    a_schema_keeps_its_naming,
);
