//! Tables are data: Fivetran's column types, table declarations, and their
//! mapping to Arrow, DuckDB and Parquet.
//!
//! A connector declares each table as a [`TableSchema`] value. The same value
//! is printed by `etl schema`, drives the batch decoder (which JSON path feeds
//! which column, with which type) and is handed to any destination, which
//! creates and evolves its tables from it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Serialize;

/// Name of the soft-delete flag every destination table carries.
pub const DELETED_COLUMN: &str = "_etl_deleted";

/// Time zone string of UTC_DATETIME Arrow columns.
pub const UTC: &str = "UTC";

/// Fivetran's column types (Connector SDK `schema()` type names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ColumnType {
    Boolean,
    Short,
    Int,
    Long,
    Decimal { precision: u8, scale: i8 },
    Float,
    Double,
    NaiveDate,
    NaiveDatetime,
    UtcDatetime,
    Binary,
    Xml,
    String,
    Json,
}

impl ColumnType {
    /// Parse a Fivetran type name (`"UTC_DATETIME"`, `"DECIMAL(10,2)"`).
    pub fn parse(name: &str) -> Result<Self, String> {
        let upper = name.trim().to_ascii_uppercase();
        let t = match upper.as_str() {
            "BOOLEAN" => ColumnType::Boolean,
            "SHORT" => ColumnType::Short,
            "INT" => ColumnType::Int,
            "LONG" => ColumnType::Long,
            "FLOAT" => ColumnType::Float,
            "DOUBLE" => ColumnType::Double,
            "NAIVE_DATE" => ColumnType::NaiveDate,
            "NAIVE_DATETIME" => ColumnType::NaiveDatetime,
            "UTC_DATETIME" => ColumnType::UtcDatetime,
            "BINARY" => ColumnType::Binary,
            "XML" => ColumnType::Xml,
            "STRING" => ColumnType::String,
            "JSON" => ColumnType::Json,
            "DECIMAL" => {
                return Err("DECIMAL needs a precision and scale, e.g. DECIMAL(10,2)".into())
            }
            other => {
                if let Some(args) = other
                    .strip_prefix("DECIMAL(")
                    .and_then(|s| s.strip_suffix(')'))
                {
                    let (p, s) = args
                        .split_once(',')
                        .ok_or("DECIMAL needs (precision,scale)")?;
                    let precision: u8 = p
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad DECIMAL precision {p:?}"))?;
                    let scale: i8 = s
                        .trim()
                        .parse()
                        .map_err(|_| format!("bad DECIMAL scale {s:?}"))?;
                    return ColumnType::decimal(precision, scale);
                }
                return Err(format!("unrecognized column type {name:?}"));
            }
        };
        Ok(t)
    }

    /// A DECIMAL with a checked precision (1..=38) and scale (0..=precision).
    pub fn decimal(precision: u8, scale: i8) -> Result<Self, String> {
        if !(1..=38).contains(&precision) {
            return Err(format!("DECIMAL precision must be 1..38, got {precision}"));
        }
        if scale < 0 || scale as u8 > precision {
            return Err(format!("DECIMAL scale must be 0..{precision}, got {scale}"));
        }
        Ok(ColumnType::Decimal { precision, scale })
    }

    /// The Arrow type batches carry for this column.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Short => DataType::Int16,
            ColumnType::Int => DataType::Int32,
            ColumnType::Long => DataType::Int64,
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::Float => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::NaiveDate => DataType::Date32,
            ColumnType::NaiveDatetime => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::UtcDatetime => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
            ColumnType::Binary => DataType::Binary,
            ColumnType::Xml | ColumnType::String | ColumnType::Json => DataType::Utf8,
        }
    }

    /// The DuckDB column type.
    pub fn duckdb_type(&self) -> String {
        match self {
            ColumnType::Boolean => "BOOLEAN".into(),
            ColumnType::Short => "SMALLINT".into(),
            ColumnType::Int => "INTEGER".into(),
            ColumnType::Long => "BIGINT".into(),
            ColumnType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            ColumnType::Float => "FLOAT".into(),
            ColumnType::Double => "DOUBLE".into(),
            ColumnType::NaiveDate => "DATE".into(),
            ColumnType::NaiveDatetime => "TIMESTAMP".into(),
            ColumnType::UtcDatetime => "TIMESTAMPTZ".into(),
            ColumnType::Binary => "BLOB".into(),
            ColumnType::Xml | ColumnType::String => "VARCHAR".into(),
            ColumnType::Json => "JSON".into(),
        }
    }

    /// The type DuckDB reports for a column (`information_schema.columns.data_type`).
    pub fn from_duckdb(t: &str) -> Option<ColumnType> {
        let t = t.trim().to_ascii_uppercase();
        Some(match t.as_str() {
            "BOOLEAN" => ColumnType::Boolean,
            "SMALLINT" => ColumnType::Short,
            "INTEGER" => ColumnType::Int,
            "BIGINT" => ColumnType::Long,
            "FLOAT" | "REAL" => ColumnType::Float,
            "DOUBLE" => ColumnType::Double,
            "DATE" => ColumnType::NaiveDate,
            "TIMESTAMP" => ColumnType::NaiveDatetime,
            "TIMESTAMP WITH TIME ZONE" | "TIMESTAMPTZ" => ColumnType::UtcDatetime,
            "BLOB" => ColumnType::Binary,
            "VARCHAR" => ColumnType::String,
            "JSON" => ColumnType::Json,
            d if d.starts_with("DECIMAL(") => {
                let (p, s) = d[8..].trim_end_matches(')').split_once(',')?;
                ColumnType::decimal(p.trim().parse().ok()?, s.trim().parse().ok()?).ok()?
            }
            _ => return None,
        })
    }

    /// Whether every value of this type fits `wider` without loss.
    pub fn fits_in(&self, wider: &ColumnType) -> bool {
        use ColumnType::*;
        let rank = |t: &ColumnType| match t {
            Short => Some(1),
            Int => Some(2),
            Long => Some(3),
            _ => None,
        };
        self == wider
            || matches!(wider, String) && !matches!(self, Binary)
            || matches!(
                (self, wider),
                (Xml, String) | (String, Xml) | (NaiveDate, NaiveDatetime)
            )
            || matches!(
                (self, wider),
                (Short | Int | Long | Float, Double) | (Short, Float)
            )
            // The SDK tester's widenings of inferred columns.
            || matches!(
                (self, wider),
                (Boolean, Short | Int | Long | Float | Double)
                    | (Int | Long, Float)
                    | (NaiveDate | NaiveDatetime, UtcDatetime)
            )
            || matches!((rank(self), rank(wider)), (Some(a), Some(b)) if a <= b)
    }

    /// The Parquet physical/logical type this column is written as.
    pub fn parquet_type(&self) -> String {
        match self {
            ColumnType::Boolean => "BOOLEAN".into(),
            ColumnType::Short => "INT32 (INTEGER(16,true))".into(),
            ColumnType::Int => "INT32".into(),
            ColumnType::Long => "INT64".into(),
            ColumnType::Decimal { precision, scale } => {
                format!("FIXED_LEN_BYTE_ARRAY (DECIMAL({precision},{scale}))")
            }
            ColumnType::Float => "FLOAT".into(),
            ColumnType::Double => "DOUBLE".into(),
            ColumnType::NaiveDate => "INT32 (DATE)".into(),
            ColumnType::NaiveDatetime => "INT64 (TIMESTAMP(MICROS,false))".into(),
            ColumnType::UtcDatetime => "INT64 (TIMESTAMP(MICROS,true))".into(),
            ColumnType::Binary => "BYTE_ARRAY".into(),
            ColumnType::Xml | ColumnType::String => "BYTE_ARRAY (STRING)".into(),
            ColumnType::Json => "BYTE_ARRAY (JSON)".into(),
        }
    }

    /// Fivetran's name for the type.
    pub fn fivetran_name(&self) -> String {
        match self {
            ColumnType::Boolean => "BOOLEAN".into(),
            ColumnType::Short => "SHORT".into(),
            ColumnType::Int => "INT".into(),
            ColumnType::Long => "LONG".into(),
            ColumnType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            ColumnType::Float => "FLOAT".into(),
            ColumnType::Double => "DOUBLE".into(),
            ColumnType::NaiveDate => "NAIVE_DATE".into(),
            ColumnType::NaiveDatetime => "NAIVE_DATETIME".into(),
            ColumnType::UtcDatetime => "UTC_DATETIME".into(),
            ColumnType::Binary => "BINARY".into(),
            ColumnType::Xml => "XML".into(),
            ColumnType::String => "STRING".into(),
            ColumnType::Json => "JSON".into(),
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fivetran_name())
    }
}

/// The Fivetran type a batch's field declares in its `etl.type` metadata
/// (inferred JSON columns are text in Arrow but JSON in the destination).
pub fn declared_type_of(f: &Field) -> Option<ColumnType> {
    f.metadata()
        .get("etl.type")
        .and_then(|t| ColumnType::parse(t).ok())
}

/// Where a column's value comes from in a source record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ColumnSource {
    /// A path of object keys into the record (`["attributes", "email"]`).
    Path(Vec<String>),
    /// The whole record, byte for byte as the source sent it.
    Raw,
    /// The time this sync wrote the row.
    SyncedAt,
    /// SHA-1 of the whole record as the Connector SDK hashes rows without a
    /// primary key (`json.dumps(row, sort_keys=True)`): the surrogate key `_etl_id`.
    RowHash,
    /// The `_fivetran_id` the SDK's tester gives a row of a table without a
    /// primary key (see [`crate::decode::pyjson::fivetran_id`]): what
    /// `RowHash` becomes under Fivetran naming.
    FivetranId,
}

/// One declared column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub source: ColumnSource,
}

impl Column {
    /// A column read from the record key of the same name.
    pub fn new(name: &str, ty: ColumnType) -> Self {
        Column {
            name: name.into(),
            ty,
            source: ColumnSource::Path(vec![name.into()]),
        }
    }

    /// A column read from a dotted path (`"attributes.email"`).
    pub fn at(name: &str, ty: ColumnType, path: &str) -> Self {
        Column {
            name: name.into(),
            ty,
            source: ColumnSource::Path(path.split('.').map(String::from).collect()),
        }
    }

    /// A JSON column holding the whole record.
    pub fn raw(name: &str) -> Self {
        Column {
            name: name.into(),
            ty: ColumnType::Json,
            source: ColumnSource::Raw,
        }
    }

    /// The surrogate key of a table without a primary key (see [`ColumnSource::RowHash`]).
    pub fn row_hash(name: &str) -> Self {
        Column {
            name: name.into(),
            ty: ColumnType::String,
            source: ColumnSource::RowHash,
        }
    }

    /// A UTC_DATETIME column stamped with the sync time.
    pub fn synced_at(name: &str) -> Self {
        Column {
            name: name.into(),
            ty: ColumnType::UtcDatetime,
            source: ColumnSource::SyncedAt,
        }
    }
}

/// What to do with a record whose value does not fit its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum OnBadRow {
    /// Stop the sync with an error naming table, column, row and value.
    #[default]
    Fail,
    /// Set the row aside in `_etl_rejects` (same commit) and go on.
    Quarantine,
}

/// A table declaration: name, primary key, columns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableSchema {
    pub name: String,
    pub primary_key: Vec<String>,
    pub columns: Vec<Column>,
    pub on_bad_row: OnBadRow,
    /// How a partitioned destination (Parquet) lays the table out; `None`: one directory.
    pub partition_by: Option<Partitioning>,
    /// The soft-delete flag the destination adds ([`DELETED_COLUMN`], or
    /// `_fivetran_deleted` under Fivetran naming).
    pub deleted_column: &'static str,
}

/// How a partition value is derived from its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartitionTransform {
    /// The value itself (strings, integers, booleans, dates).
    Identity,
    /// `YYYY` of a date or timestamp (UTC).
    Year,
    /// `YYYY-MM` of a date or timestamp (UTC).
    Month,
    /// `YYYY-MM-DD` of a date or timestamp (UTC).
    Day,
}

/// A table's partitioning: `created_at:day`, `created_at:month`, `plan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partitioning {
    pub column: String,
    pub transform: PartitionTransform,
}

impl Partitioning {
    /// Parse `column[:identity|year|month|day]`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (column, transform) = match spec.split_once(':') {
            Some((c, t)) => (c.trim(), t.trim()),
            None => (spec.trim(), "identity"),
        };
        if column.is_empty() {
            return Err(format!("partition spec {spec:?} names no column"));
        }
        let transform = match transform.to_ascii_lowercase().as_str() {
            "identity" | "value" => PartitionTransform::Identity,
            "year" => PartitionTransform::Year,
            "month" => PartitionTransform::Month,
            "day" => PartitionTransform::Day,
            other => {
                return Err(format!(
                    "partition transform {other:?} in {spec:?} is not one of identity, year, month, day"
                ))
            }
        };
        Ok(Partitioning {
            column: column.into(),
            transform,
        })
    }

    /// The directory key: `created_at_day=2024-01-31`, `plan_value=pro`. It
    /// never equals the column's own name: hive-partitioning readers let the
    /// directory value shadow a file column of the same name, and the
    /// directory form loses information (empty strings read back as NULL,
    /// `"007"` as the integer 7).
    pub fn key(&self) -> String {
        match self.transform {
            PartitionTransform::Identity => format!("{}_value", self.column),
            PartitionTransform::Year => format!("{}_year", self.column),
            PartitionTransform::Month => format!("{}_month", self.column),
            PartitionTransform::Day => format!("{}_day", self.column),
        }
    }

    /// Check the spec against the table it partitions.
    pub fn check(&self, t: &TableSchema) -> Result<(), String> {
        let c = t.column(&self.column).ok_or_else(|| {
            format!(
                "table {}: partition column {} is not declared",
                t.name, self.column
            )
        })?;
        let temporal = matches!(
            c.ty,
            ColumnType::UtcDatetime | ColumnType::NaiveDatetime | ColumnType::NaiveDate
        );
        let ok = match self.transform {
            PartitionTransform::Identity => matches!(
                c.ty,
                ColumnType::String
                    | ColumnType::Boolean
                    | ColumnType::Short
                    | ColumnType::Int
                    | ColumnType::Long
                    | ColumnType::NaiveDate
            ),
            _ => temporal,
        };
        if !ok {
            return Err(format!(
                "table {}: cannot partition by {self}: column {} is {}",
                t.name, c.name, c.ty
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Partitioning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transform {
            PartitionTransform::Identity => f.write_str(&self.column),
            PartitionTransform::Year => write!(f, "{}:year", self.column),
            PartitionTransform::Month => write!(f, "{}:month", self.column),
            PartitionTransform::Day => write!(f, "{}:day", self.column),
        }
    }
}

impl TableSchema {
    pub fn new(name: &str, primary_key: &[&str], columns: Vec<Column>) -> Self {
        TableSchema {
            name: name.into(),
            primary_key: primary_key.iter().map(|s| s.to_string()).collect(),
            columns,
            on_bad_row: OnBadRow::Fail,
            partition_by: None,
            deleted_column: DELETED_COLUMN,
        }
    }

    /// The columns stamped with the sync time (left out when a row is
    /// compared with its stored version).
    pub fn synced_columns(&self) -> impl Iterator<Item = &str> {
        self.columns
            .iter()
            .filter(|c| c.source == ColumnSource::SyncedAt)
            .map(|c| c.name.as_str())
    }

    /// Where the soft-delete flag goes when the table is created: before a
    /// trailing sync-time column (`…, _fivetran_deleted, _fivetran_synced`,
    /// as the Connector SDK's tester orders them), else last.
    pub fn deleted_position(&self) -> usize {
        match self.columns.last() {
            Some(c) if c.source == ColumnSource::SyncedAt => self.columns.len() - 1,
            _ => self.columns.len(),
        }
    }

    /// Check the declaration itself: unique column names, primary key columns exist.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = HashMap::new();
        for (i, c) in self.columns.iter().enumerate() {
            if c.name.is_empty() {
                return Err(format!("table {}: column {i} has an empty name", self.name));
            }
            if seen.insert(c.name.as_str(), i).is_some() {
                return Err(format!(
                    "table {}: column {} declared twice",
                    self.name, c.name
                ));
            }
            if c.name == DELETED_COLUMN || c.name == "_fivetran_deleted" {
                return Err(format!(
                    "table {}: column name {} is reserved",
                    self.name, c.name
                ));
            }
        }
        for k in &self.primary_key {
            if !seen.contains_key(k.as_str()) {
                return Err(format!(
                    "table {}: primary key column {k} is not declared",
                    self.name
                ));
            }
        }
        if let Some(p) = &self.partition_by {
            p.check(self)?;
        }
        Ok(())
    }

    /// The same table laid out by `spec` in partitioned destinations.
    pub fn partitioned_by(mut self, spec: Partitioning) -> Self {
        self.partition_by = Some(spec);
        self
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn is_primary_key(&self, name: &str) -> bool {
        self.primary_key.iter().any(|k| k == name)
    }

    /// The Arrow schema of decoded batches. Primary key columns are non-nullable
    /// and carry `etl.primary_key = "true"` in their field metadata.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                let pk = self.is_primary_key(&c.name);
                let mut f = Field::new(&c.name, c.ty.arrow_type(), !pk);
                let mut md = HashMap::new();
                md.insert("etl.type".to_string(), c.ty.fivetran_name());
                if pk {
                    md.insert("etl.primary_key".to_string(), "true".to_string());
                }
                f = f.with_metadata(md);
                f
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The Arrow schema of a subset of columns (partial updates, deletes by key).
    pub fn arrow_schema_of(&self, names: &[&str]) -> Result<SchemaRef, String> {
        let full = self.arrow_schema();
        let mut fields = Vec::with_capacity(names.len());
        for n in names {
            let f = full
                .field_with_name(n)
                .map_err(|_| format!("table {}: no column {n}", self.name))?;
            fields.push(f.clone());
        }
        Ok(Arc::new(Schema::new(fields)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fivetran_type_name() {
        for name in [
            "BOOLEAN",
            "SHORT",
            "INT",
            "LONG",
            "FLOAT",
            "DOUBLE",
            "NAIVE_DATE",
            "NAIVE_DATETIME",
            "UTC_DATETIME",
            "BINARY",
            "XML",
            "STRING",
            "JSON",
        ] {
            let t = ColumnType::parse(name).unwrap();
            assert_eq!(t.fivetran_name(), name);
        }
        assert_eq!(
            ColumnType::parse("decimal(10, 2)").unwrap(),
            ColumnType::Decimal {
                precision: 10,
                scale: 2
            }
        );
        assert!(ColumnType::parse("DECIMAL")
            .unwrap_err()
            .contains("precision"));
        assert!(ColumnType::parse("DECIMAL(40,2)")
            .unwrap_err()
            .contains("1..38"));
        assert!(ColumnType::parse("TEXT")
            .unwrap_err()
            .contains("unrecognized"));
    }

    #[test]
    fn maps_to_duckdb_and_arrow() {
        assert_eq!(ColumnType::UtcDatetime.duckdb_type(), "TIMESTAMPTZ");
        assert_eq!(ColumnType::Json.duckdb_type(), "JSON");
        assert_eq!(
            ColumnType::UtcDatetime.arrow_type(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            ColumnType::Decimal {
                precision: 12,
                scale: 3
            }
            .arrow_type(),
            DataType::Decimal128(12, 3)
        );
    }

    #[test]
    fn validate_rejects_missing_pk_and_duplicates() {
        let t = TableSchema::new("t", &["id"], vec![Column::new("x", ColumnType::String)]);
        assert!(t.validate().unwrap_err().contains("primary key column id"));
        let t = TableSchema::new(
            "t",
            &["id"],
            vec![
                Column::new("id", ColumnType::String),
                Column::new("id", ColumnType::Long),
            ],
        );
        assert!(t.validate().unwrap_err().contains("declared twice"));
    }

    #[test]
    fn pk_fields_are_marked_in_arrow_metadata() {
        let t = TableSchema::new("t", &["id"], vec![Column::new("id", ColumnType::String)]);
        let s = t.arrow_schema();
        assert!(!s.field(0).is_nullable());
        assert_eq!(
            s.field(0)
                .metadata()
                .get("etl.primary_key")
                .map(String::as_str),
            Some("true")
        );
    }
}

/// What a destination does when a column exists as `existing` and is now
/// declared `declared`: keep it (the same type), widen it (every old value
/// fits the new type), or refuse (the old values may not fit, so the
/// declared type cannot be honoured without losing or inventing data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeChange {
    Keep,
    Widen,
    Refuse,
}

impl TypeChange {
    pub fn of(existing: ColumnType, declared: ColumnType) -> TypeChange {
        if existing == declared || existing.duckdb_type() == declared.duckdb_type() {
            TypeChange::Keep
        } else if existing.fits_in(&declared) {
            TypeChange::Widen
        } else {
            TypeChange::Refuse
        }
    }

    /// The error for a refused change, `why` it is refused.
    pub fn refused(
        table: &str,
        column: &str,
        existing: ColumnType,
        declared: ColumnType,
        why: &str,
    ) -> String {
        format!(
            "table {table}, column {column}: it holds {existing} values and is now declared \
             {declared}, {why}; declare it {existing} again, or drop the table to start over \
             (etl reset CONNECTOR --out PATH --table {table} --drop)"
        )
    }
}

#[cfg(test)]
mod type_change_tests {
    use super::*;

    #[test]
    fn widening_is_safe_and_anything_else_is_refused() {
        use ColumnType::*;
        assert_eq!(TypeChange::of(Int, Long), TypeChange::Widen);
        assert_eq!(TypeChange::of(Long, Double), TypeChange::Widen);
        assert_eq!(TypeChange::of(NaiveDate, NaiveDatetime), TypeChange::Widen);
        assert_eq!(TypeChange::of(UtcDatetime, String), TypeChange::Widen);
        assert_eq!(TypeChange::of(Long, Long), TypeChange::Keep);
        assert_eq!(TypeChange::of(Xml, String), TypeChange::Keep);
        assert_eq!(TypeChange::of(Long, Int), TypeChange::Refuse);
        assert_eq!(TypeChange::of(String, Json), TypeChange::Refuse);
        assert_eq!(TypeChange::of(String, Long), TypeChange::Refuse);
        assert_eq!(TypeChange::of(Boolean, UtcDatetime), TypeChange::Refuse);
        assert_eq!(
            ColumnType::from_duckdb("TIMESTAMP WITH TIME ZONE"),
            Some(UtcDatetime)
        );
        assert_eq!(
            ColumnType::from_duckdb("DECIMAL(15,2)"),
            Some(ColumnType::decimal(15, 2).unwrap())
        );
    }
}
