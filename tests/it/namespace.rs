//! One namespace per connector: Userflow and Egnyte both have a `users`
//! table and land side by side (DuckDB schemas, `<lake>/<schema>/`
//! datasets); a table another connector created is refused with a message,
//! never a SQL error; warehouses written before namespaces keep working for
//! the connector they hold.

use std::path::Path;
use std::sync::Arc;

use etl::playground::egnyte::EgnyteOptions;
use etl::playground::{Playground, PlaygroundOptions};
use etl::state::State;
use etl::{Error, SyncOptions};
use serde_json::json;

use crate::common::*;
use crate::dests::{for_both_destinations_async, grid, reader, Kind};

async fn both_apis() -> Playground {
    playground_with(PlaygroundOptions {
        users: 120,
        flow_runs: 30,
        egnyte: EgnyteOptions {
            users: 40,
            groups: 3,
            notes: 10,
            bookmarks: 5,
            qps: None,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

fn egnyte_config(pg: &Playground) -> etl::config::ConfigReader {
    let mut c = pg.egnyte_config();
    c["requests_per_second"] = json!(100);
    etl::config::ConfigReader::from_map(c.as_object().unwrap().clone())
}

fn in_schema(schema: &str) -> SyncOptions {
    SyncOptions {
        schema: Some(schema.into()),
        ..opts(1_000_000)
    }
}

fn count(out: &Path, table: &str) -> i64 {
    query_i64(out, &format!("SELECT count(*) FROM {table}"))
}

async fn two_connectors_with_a_users_table_land_side_by_side(kind: Kind) {
    let pg = both_apis().await;
    let (_d, out) = tmp_for(kind);
    for _ in 0..2 {
        etl::sync("userflow", config(&pg, json!({})), &out, opts(1_000_000))
            .await
            .unwrap();
        etl::sync("egnyte", egnyte_config(&pg), &out, opts(1_000_000))
            .await
            .unwrap();
    }
    assert_eq!(count(&out, "userflow.users"), 120);
    assert_eq!(count(&out, "egnyte.users"), 40);
    assert_eq!(count(&out, "egnyte.groups"), 3);
    // State and run history per schema.
    assert!(saved_state_in(&out, "userflow", "userflow").is_some());
    assert!(saved_state_in(&out, "userflow", "egnyte").is_none());
    assert!(saved_state_in(&out, "egnyte", "egnyte").is_some());
    let r = reader(&out);
    assert_eq!(
        grid(
            &r,
            "SELECT connector, count(*) FROM userflow._etl_runs GROUP BY 1 \
             UNION ALL SELECT connector, count(*) FROM egnyte._etl_runs GROUP BY 1"
        ),
        vec!["Text(\"egnyte\")|BigInt(2)", "Text(\"userflow\")|BigInt(2)"]
    );
    if kind == Kind::Parquet {
        let mut dirs: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        dirs.sort();
        assert_eq!(dirs, ["egnyte", "userflow"]);
    }
}

async fn a_table_of_another_connector_is_refused(kind: Kind) {
    let pg = both_apis().await;
    let (_d, out) = tmp_for(kind);
    etl::sync(
        "userflow",
        config(&pg, json!({})),
        &out,
        in_schema("shared"),
    )
    .await
    .unwrap();
    // Prefect shares the schema: its tables are different.
    etl::sync(
        "prefect",
        etl::config::ConfigReader::from_map(pg.prefect_config().as_object().unwrap().clone()),
        &out,
        in_schema("shared"),
    )
    .await
    .unwrap();
    let e = etl::sync("egnyte", egnyte_config(&pg), &out, in_schema("shared"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Usage(_)), "{e:?}");
    assert_eq!(
        e.to_string(),
        "table shared.users belongs to connector userflow, not egnyte; \
         sync egnyte into a schema of its own (the default, or --schema NAME)"
    );
    // Nothing of Egnyte's landed, Userflow's rows are as they were.
    assert_eq!(count(&out, "shared.users"), 120);
    assert!(saved_state_in(&out, "shared", "egnyte").is_none());
    let r = reader(&out);
    let tables = grid(
        &r,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shared' \
         AND table_name NOT LIKE '\\_etl%' ESCAPE '\\'",
    );
    assert_eq!(
        tables,
        [
            "Text(\"deployments\")",
            "Text(\"flow_runs\")",
            "Text(\"flows\")",
            "Text(\"users\")"
        ]
    );
    // In its own schema it is fine.
    etl::sync("egnyte", egnyte_config(&pg), &out, opts(1_000_000))
        .await
        .unwrap();
    assert_eq!(count(&out, "egnyte.users"), 40);
}

async fn a_warehouse_from_before_schemas_keeps_working(kind: Kind) {
    let pg = both_apis().await;
    let (_d, out) = tmp_for(kind);
    // What an etl without namespaces left: Userflow's table and state at the
    // top level (DuckDB's main schema, the dataset at `out` itself), no owners.
    let info = etl::connectors::find("userflow").unwrap();
    let conn = (info.build)(config(&pg, json!({})), Arc::new(Default::default())).unwrap();
    {
        let mut d = kind.open(&out);
        d.prepare(&conn.tables()).unwrap();
        d.commit("userflow", &State::default()).unwrap();
    }
    let s = etl::sync("userflow", config(&pg, json!({})), &out, opts(1_000_000))
        .await
        .unwrap();
    assert_eq!(s.tables["users"].inserted, 120);
    assert_eq!(count(&out, "main.users"), 120);
    let state = saved_state_in(&out, "main", "userflow").unwrap();
    assert!(state["streams"]["users"].is_object(), "{state}");
    let prefect =
        || etl::config::ConfigReader::from_map(pg.prefect_config().as_object().unwrap().clone());
    match kind {
        Kind::Delta => unreachable!("run for DuckDB and Parquet only"),
        // Another connector gets a schema of its own in the same file.
        Kind::DuckDb => {
            etl::sync("prefect", prefect(), &out, opts(1_000_000))
                .await
                .unwrap();
            assert_eq!(count(&out, "prefect.flows"), 40);
        }
        // A dataset is one schema: another connector is told what to do.
        Kind::Parquet => {
            let e = etl::sync("prefect", prefect(), &out, opts(1_000_000))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{e:?}");
            let msg = e.to_string();
            assert!(
                msg.contains(
                    "written before connectors had schemas of their own (it holds userflow)"
                ),
                "{msg}"
            );
            assert!(!out.join("prefect").exists());
        }
    }
}

for_both_destinations_async!(
    two_connectors_with_a_users_table_land_side_by_side,
    a_table_of_another_connector_is_refused,
    a_warehouse_from_before_schemas_keeps_working,
);

#[test]
fn schema_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for bad in ["Users", "a-b", "_etl_x", "../up"] {
        let cfg = etl::config::ConfigReader::from_map(
            json!({"userflow_api_key": "k"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let e = rt
            .block_on(etl::sync(
                "userflow",
                cfg,
                &dir.path().join("w.duckdb"),
                in_schema(bad),
            ))
            .unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{bad}: {e:?}");
        assert!(
            e.to_string().starts_with(&format!("--schema {bad:?}")),
            "{e}"
        );
    }
    assert!(!dir.path().join("w.duckdb").exists());
}
