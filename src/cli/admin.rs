//! `etl schema`, `etl state` and `etl reset`: describing connectors and
//! looking after a destination's saved progress.

use std::path::Path;

use etl::Error;

use crate::FormatArg;

pub fn schema(
    connector: &str,
    spec: Option<&Path>,
    naming: etl::naming::Naming,
    json: bool,
) -> Result<(), Error> {
    let info = etl::connectors::find(connector).ok_or_else(|| etl::unknown_connector(connector))?;
    let (tables, sample) = tables_and_sample(&info, connector, spec)?;
    // The names the tables land with.
    let mut renamer = etl::naming::Renamer::new(naming);
    let tables: Vec<std::sync::Arc<etl::schema::TableSchema>> =
        tables.iter().map(|t| renamer.table(t)).collect();
    if json {
        let v: Vec<serde_json::Value> = tables
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "primary_key": t.primary_key,
                    "partition_by": t.partition_by.as_ref().map(|p| p.to_string()),
                    "columns_inferred_from_data": info.name == "rest",
                    "columns": describe(t).into_iter().map(|(name, ty, duck, source)| serde_json::json!({
                        "name": name, "type": ty, "duckdb_type": duck, "source": source,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        out!(
            "{}",
            serde_json::to_string_pretty(&v).expect("schemas serialise")
        );
        return Ok(());
    }
    for t in &tables {
        let partitioned = t.partition_by.as_ref().map_or(String::new(), |p| {
            format!("; Parquet partitions: {p} → {}=…", p.key())
        });
        out!(
            "table {} (primary key: {}{partitioned})",
            t.name,
            t.primary_key.join(", ")
        );
        let cols = describe(t);
        // Names padded to the longest of the table (and at least 16).
        let w = cols
            .iter()
            .map(|c| c.0.chars().count())
            .max()
            .unwrap_or(0)
            .max(16);
        for (name, ty, duck, source) in cols {
            out!("  {name:<w$} {ty:<14} duckdb {duck:<12} from {source}");
        }
        if info.name == "rest" {
            out!("  (plus a column for each other field the records have, typed from the data)");
        }
    }
    if info.name == "rest" {
        out!("\nvariables the spec takes (give them in --config FILE):\n{sample}");
    } else {
        out!("\nsample configuration:\n{sample}");
    }
    Ok(())
}

/// A connector's tables and its sample configuration (a spec's: the
/// variables it takes).
fn tables_and_sample(
    info: &etl::connectors::ConnectorInfo,
    connector: &str,
    spec: Option<&Path>,
) -> Result<(Vec<std::sync::Arc<etl::schema::TableSchema>>, String), Error> {
    match (info.name, spec) {
        ("rest", Some(path)) => {
            let (spec, vars) = etl::connectors::rest::spec::load_for_schema(path)?;
            let rest = etl::connectors::rest::Rest::new(spec, Default::default())?;
            let sample: serde_json::Map<String, serde_json::Value> = vars
                .iter()
                .filter(|v| !v.starts_with("env:"))
                .map(|v| {
                    (
                        v.clone(),
                        serde_json::json!(format!("<{}>", v.to_uppercase())),
                    )
                })
                .collect();
            let sample = serde_json::to_string_pretty(&sample).expect("json");
            Ok((etl::connectors::Connector::tables(&rest), sample))
        }
        ("rest", None) => Err(Error::Usage(
            "`etl schema rest` needs --spec FILE: the tables are the spec's (see data/specs/)"
                .into(),
        )),
        (_, Some(_)) => Err(Error::Usage(format!(
            "--spec is for `etl schema rest`; {connector} is a built-in connector"
        ))),
        _ => Ok(((info.tables)(), info.sample_config.to_string())),
    }
}

/// One description of a table's columns for both outputs: the declared
/// columns, then the columns every destination adds. (name, type, DuckDB
/// type, where it comes from)
fn describe(t: &etl::schema::TableSchema) -> Vec<(String, String, String, String)> {
    let mut cols: Vec<(String, String, String, String)> = t
        .columns
        .iter()
        .map(|c| {
            let source = match &c.source {
                etl::schema::ColumnSource::Path(p) => p.join("."),
                etl::schema::ColumnSource::Raw => "(whole record)".into(),
                etl::schema::ColumnSource::SyncedAt => "(sync time)".into(),
                etl::schema::ColumnSource::RowHash => "(SHA-1 of the record)".into(),
                etl::schema::ColumnSource::FivetranId => "(the tester's hash of the record)".into(),
            };
            (c.name.clone(), c.ty.to_string(), c.ty.duckdb_type(), source)
        })
        .collect();
    cols.insert(
        t.deleted_position(),
        (
            t.deleted_column.to_string(),
            "BOOLEAN".into(),
            "BOOLEAN".into(),
            "(soft-delete flag)".into(),
        ),
    );
    cols
}

fn output_format(f: Option<FormatArg>) -> Option<etl::OutputFormat> {
    f.map(Into::into)
}

/// The namespace `etl state` and `etl reset` look in.
fn namespace(
    connector: &str,
    schema: Option<&str>,
) -> Result<etl::dest::namespace::Namespace, Error> {
    let info = etl::connectors::find(connector).ok_or_else(|| etl::unknown_connector(connector))?;
    if schema.is_none() && info.name == "rest" {
        return Err(Error::Usage(
            "a rest connector's tables are in the schema named after its spec (the spec's `name`, \
             or its file name, as the sync's summary shows): give it with --schema NAME"
                .into(),
        ));
    }
    etl::dest::namespace::Namespace::new(schema, info.name, info.name)
}

/// The state `connector` committed to `dest`, or an error saying there is none.
fn committed_state(
    dest: &mut dyn etl::dest::Destination,
    connector: &str,
    out: &Path,
) -> Result<etl::state::State, Error> {
    let info = etl::connectors::find(connector).ok_or_else(|| etl::unknown_connector(connector))?;
    dest.load_state(info.name)?.ok_or_else(|| {
        Error::Usage(format!(
            "connector {connector} has never committed to {}",
            out.display()
        ))
    })
}

pub fn show_state(
    connector: &str,
    out: &Path,
    format: Option<FormatArg>,
    schema: Option<&str>,
    json: bool,
) -> Result<(), Error> {
    let ns = namespace(connector, schema)?;
    let mut dest = etl::open_existing(out, output_format(format), &ns)?;
    let state = committed_state(dest.as_mut(), connector, out)?;
    if json {
        out!("{}", serde_json::to_string_pretty(&state).expect("json"));
        return Ok(());
    }
    out!("{connector} in {}:", dest.describe());
    for (stream, s) in &state.streams {
        if stream.starts_with('_') {
            // Private entries (a sealed OAuth token): never shown.
            out!("  {stream:<20} (kept for the connector; not shown)");
        } else {
            out!("  {stream:<20} {s}");
        }
    }
    Ok(())
}

pub fn reset(
    connector: &str,
    out: &Path,
    format: Option<FormatArg>,
    schema: Option<&str>,
    table: Option<&str>,
    drop: bool,
) -> Result<(), Error> {
    let ns = namespace(connector, schema)?;
    let mut dest = etl::open_existing(out, output_format(format), &ns)?;
    let mut state = committed_state(dest.as_mut(), connector, out)?;
    let tables: Vec<String> = match table {
        Some(t) => vec![t.to_string()],
        None => state
            .streams
            .keys()
            .filter(|k| !k.starts_with('_'))
            .cloned()
            .collect(),
    };
    for t in &tables {
        let had = state.streams.remove(t).is_some();
        let dropped = drop && dest.drop_table(t)?;
        if !had && !dropped {
            let known: Vec<&String> = state
                .streams
                .keys()
                .filter(|k| !k.starts_with('_'))
                .collect();
            return Err(Error::Usage(format!(
                "{connector} has no table {t:?} in {} (tables with saved progress: {})",
                out.display(),
                known
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    // One commit: the state without them (and the drops).
    dest.commit(connector, &state)?;
    for t in &tables {
        out!(
            "reset {connector} {t}: the next sync reads it from the start{}",
            if drop { "; the table was dropped" } else { "" }
        );
    }
    Ok(())
}
