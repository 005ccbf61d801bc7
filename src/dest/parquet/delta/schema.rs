//! A table as a Delta table: its schema (Fivetran types as Delta types, the
//! partition key as a string partition column), its etl properties, and
//! the table read back from a snapshot.

use std::collections::HashMap;

use deltalake_core::kernel::{DataType as DType, MetadataValue, StructField, StructType};

use super::super::*;

/// Table properties etl records on each Delta table.
pub(super) const OWNER: &str = "etl.owner";
pub(super) const PRIMARY_KEY: &str = "etl.primaryKey";
pub(super) const PARTITION_BY: &str = "etl.partitionBy";
/// On the state table: the naming of the schema's tables.
pub(super) const NAMING: &str = "etl.naming";
/// Field metadata: the column's Fivetran type.
const TYPE_KEY: &str = "etl.type";

/// The Delta type that holds a column type's values as etl writes them.
fn delta_type(ty: ColumnType) -> std::result::Result<DType, String> {
    Ok(match ty {
        ColumnType::Boolean => DType::BOOLEAN,
        ColumnType::Short => DType::SHORT,
        ColumnType::Int => DType::INTEGER,
        ColumnType::Long => DType::LONG,
        ColumnType::Decimal { precision, scale } => {
            let scale = u8::try_from(scale).map_err(|_| {
                format!("DECIMAL({precision},{scale}): Delta has no negative scales")
            })?;
            DType::decimal(precision, scale).map_err(|e| e.to_string())?
        }
        ColumnType::Float => DType::FLOAT,
        ColumnType::Double => DType::DOUBLE,
        ColumnType::NaiveDate => DType::DATE,
        ColumnType::NaiveDatetime => DType::TIMESTAMP_NTZ,
        ColumnType::UtcDatetime => DType::TIMESTAMP,
        ColumnType::Binary => DType::BINARY,
        ColumnType::Xml | ColumnType::String | ColumnType::Json => DType::STRING,
    })
}

/// The column type of a Delta field etl did not annotate (a column added
/// by another writer).
fn column_type(dt: &DType) -> Option<ColumnType> {
    use deltalake_core::kernel::PrimitiveType as P;
    let DType::Primitive(p) = dt else { return None };
    Some(match p {
        P::Boolean => ColumnType::Boolean,
        P::Short | P::Byte => ColumnType::Short,
        P::Integer => ColumnType::Int,
        P::Long => ColumnType::Long,
        P::Float => ColumnType::Float,
        P::Double => ColumnType::Double,
        P::Date => ColumnType::NaiveDate,
        P::TimestampNtz => ColumnType::NaiveDatetime,
        P::Timestamp => ColumnType::UtcDatetime,
        P::Binary => ColumnType::Binary,
        P::String => ColumnType::String,
        P::Decimal(d) => ColumnType::Decimal {
            precision: d.precision(),
            scale: d.scale() as i8,
        },
        _ => return None,
    })
}

/// The Delta schema of `t`: its columns in file order, then the partition
/// column (a string: the partition's directory value) when partitioned.
pub(super) fn delta_schema(t: &Table, origin: &str) -> Result<StructType> {
    let mut fields = Vec::with_capacity(t.columns.len() + 1);
    for (name, ty) in &t.columns {
        let required = name == t.deleted || t.primary_key.contains(name);
        let dt = delta_type(*ty).map_err(|e| {
            Error::destination(origin, format!("table {}, column {name}: {e}", t.name))
        })?;
        fields.push(
            StructField::new(name, dt, !required)
                .with_metadata([(TYPE_KEY, MetadataValue::String(ty.fivetran_name()))]),
        );
    }
    if let Some(p) = &t.partition {
        fields.push(StructField::new(p.key(), DType::STRING, true));
    }
    StructType::try_new(fields)
        .map_err(|e| Error::destination(origin, format!("table {}: {e}", t.name)))
}

/// The partition columns of `t`'s Delta table.
pub(super) fn partition_columns(t: &Table) -> Vec<String> {
    t.partition.iter().map(|p| p.key()).collect()
}

/// The etl properties of `t`.
pub(super) fn properties(t: &Table) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Some(o) = &t.owner {
        m.insert(OWNER.to_string(), o.clone());
    }
    if !t.primary_key.is_empty() {
        m.insert(
            PRIMARY_KEY.to_string(),
            serde_json::to_string(&t.primary_key).expect("strings serialise"),
        );
    }
    if let Some(p) = &t.partition {
        m.insert(PARTITION_BY.to_string(), p.to_string());
    }
    m
}

/// The partition value of a file at `path` (its directory `key=value`),
/// as Delta's `partitionValues` holds it: the value unescaped, `None` for null.
pub(super) fn partition_value(t: &Table, path: &str) -> HashMap<String, Option<String>> {
    let mut m = HashMap::new();
    if let Some(p) = &t.partition {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let value = dir
            .split_once('=')
            .map(|(_, v)| v)
            .unwrap_or(NULL_PARTITION);
        let value =
            (value != NULL_PARTITION).then(|| super::super::files::unescape_partition(value));
        m.insert(p.key(), value);
    }
    m
}

/// A table as a snapshot of its Delta log describes it.
pub(super) fn table_from_snapshot(
    name: &str,
    snap: &deltalake_core::table::state::DeltaTableState,
    origin: &str,
) -> Result<Table> {
    let mut t = Table::new(name);
    t.json_ext = false;
    let config = snap.metadata().configuration();
    t.owner = config.get(OWNER).cloned();
    // The state table was keyed before it became append-only (see `state`).
    if let Some(pk) = config
        .get(PRIMARY_KEY)
        .filter(|_| name != super::STATE_TABLE)
    {
        t.primary_key = serde_json::from_str(pk).map_err(|e| {
            Error::destination(origin, format!("table {name}: property {PRIMARY_KEY}: {e}"))
        })?;
    }
    t.partition = config
        .get(PARTITION_BY)
        .map(|p| Partitioning::parse(p))
        .transpose()
        .map_err(|e| Error::destination(origin, format!("table {name}: {e}")))?;
    let part_cols = snap.metadata().partition_columns().to_vec();
    let schema = snap.schema();
    for f in schema.fields() {
        if part_cols.contains(f.name()) {
            continue;
        }
        let ty = match f.metadata().get(TYPE_KEY) {
            Some(MetadataValue::String(s)) => ColumnType::parse(s).ok(),
            _ => None,
        }
        .or_else(|| column_type(f.data_type()))
        .ok_or_else(|| {
            Error::destination(
                origin,
                format!(
                    "table {name}, column {}: Delta type {} is not one etl writes",
                    f.name(),
                    f.data_type()
                ),
            )
        })?;
        if f.name() == crate::naming::Naming::Fivetran.deleted() {
            t.deleted = crate::naming::Naming::Fivetran.deleted();
        }
        t.columns.push((f.name().to_string(), ty));
    }
    let mut files: Vec<LiveFile> = snap
        .log_data()
        .iter()
        .map(|f| LiveFile {
            path: f.path().into_owned(),
            rows: f.num_records().unwrap_or(0) as u64,
            bytes: Some(f.size() as u64),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for f in files {
        t.files.insert(t.next_id, f);
        t.next_id += 1;
    }
    Ok(t)
}
