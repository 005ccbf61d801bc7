//! Columns of cells → Arrow arrays of a declared type: the one set of
//! column builders that the JSON decoder (cells sliced from a page) and the
//! CSV export (cells of text) share. Bad values become nulls and are
//! reported, so the caller can quarantine their rows or fail naming them.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use base64::Engine as _;

use super::{shape, snippet, values};
use crate::schema::{ColumnType, UTC};
use crate::text::truncate_for_display;

/// A bad value found while converting a column.
pub struct BadValue {
    /// The row in the chunk.
    pub row: usize,
    /// The column's position in the table (`usize::MAX`: the whole record).
    pub column: usize,
    /// The value, shortened for a message.
    pub value: Option<String>,
    pub message: String,
}

pub(super) fn type_error(ty: ColumnType) -> String {
    format!("value does not fit type {ty}")
}

/// The rows of `arrays` that `keep` marks, as a batch of `schema`. The
/// rows dropped may have nulls where `schema` allows none (a bad key):
/// the columns are filtered before the schema is applied.
pub fn keep_rows(
    schema: &SchemaRef,
    arrays: Vec<ArrayRef>,
    keep: &[bool],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let nullable = Arc::new(arrow::datatypes::Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(nullable, arrays)?;
    let kept = filter_record_batch(&batch, &arrow::array::BooleanArray::from(keep.to_vec()))?;
    RecordBatch::try_new(schema.clone(), kept.columns().to_vec())
}

/// How a column's cells are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cells {
    /// JSON values as sliced from a page (`"text"`, `12`, `true`, `{…}`).
    Json,
    /// Plain text, as in a CSV file.
    Text,
}

impl Cells {
    /// A cell's text when it is a string (a JSON string unquoted; any text).
    fn text(self, raw: &str) -> Option<Cow<'_, str>> {
        match self {
            Cells::Json => values::json_str(raw),
            Cells::Text => Some(Cow::Borrowed(raw)),
        }
    }

    /// A cell that is no value outside text columns (an empty string).
    fn is_empty(self, raw: &str) -> bool {
        match self {
            Cells::Json => raw == "\"\"",
            Cells::Text => raw.trim().is_empty(),
        }
    }
}

/// Convert one column of cells into an Arrow array of type `ty`; bad values
/// become nulls and are recorded in `bad` (as column `c`). Both the JSON
/// decoder and the CSV connector build their columns here.
pub fn convert_column(
    ty: ColumnType,
    cells: Cells,
    column: &[Option<&str>],
    c: usize,
    bad: &mut Vec<BadValue>,
) -> ArrayRef {
    let n = column.len();
    let mut fail = |row: usize, raw: &str| {
        bad.push(BadValue {
            row,
            column: c,
            value: Some(truncate_for_display(raw, 120)),
            message: type_error(ty),
        });
    };
    macro_rules! numeric {
        (new $new:expr, $parse:expr) => {{
            let mut b = $new;
            for (r, v) in column.iter().enumerate() {
                match *v {
                    // An empty string is no value, except in a text column.
                    None => b.append_null(),
                    Some(raw) if cells.is_empty(raw) => b.append_null(),
                    Some(raw) => match $parse(raw) {
                        Some(x) => b.append_value(x),
                        None => {
                            fail(r, raw);
                            b.append_null()
                        }
                    },
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
        ($builder:ty, $parse:expr) => {
            numeric!(new<$builder>::with_capacity(n), $parse)
        };
    }
    let text = |r| cells.text(r);
    match ty {
        ColumnType::Boolean => match cells {
            Cells::Json => numeric!(BooleanBuilder, values::parse_bool),
            Cells::Text => numeric!(BooleanBuilder, values::parse_bool_text),
        },
        ColumnType::Short => numeric!(Int16Builder, |r| values::parse_i64(r)
            .and_then(|v| i16::try_from(v).ok())),
        ColumnType::Int => numeric!(Int32Builder, |r| values::parse_i64(r)
            .and_then(|v| i32::try_from(v).ok())),
        ColumnType::Long => numeric!(Int64Builder, values::parse_i64),
        ColumnType::Float => numeric!(Float32Builder, |r| values::parse_f64(r).map(|v| v as f32)),
        ColumnType::Double => numeric!(Float64Builder, values::parse_f64),
        ColumnType::Decimal { precision, scale } => {
            decimal_column(column, cells, precision, scale, &mut fail)
        }
        ColumnType::NaiveDate => {
            numeric!(Date32Builder, |r| text(r)
                .and_then(|s| values::parse_date_days(&s)))
        }
        ColumnType::NaiveDatetime => {
            numeric!(TimestampMicrosecondBuilder, |r| text(r)
                .and_then(|s| values::parse_naive_micros(&s)))
        }
        ColumnType::UtcDatetime => numeric!(
            new TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC),
            |r| text(r).and_then(|s| match cells {
                // A CSV cell may be padded; a JSON string is taken as written.
                Cells::Text => values::parse_utc_micros(s.trim()),
                Cells::Json => values::parse_utc_micros(&s),
            })
        ),
        ColumnType::Binary => binary_column(column, cells, &mut fail),
        ColumnType::String | ColumnType::Xml | ColumnType::Json => {
            text_column(ty, cells, column, c, bad)
        }
    }
}

/// Decimals scaled to `scale` digits. In JSON an empty string is a bad
/// value here (no number is written as one); in text it is no value.
fn decimal_column(
    column: &[Option<&str>],
    cells: Cells,
    precision: u8,
    scale: i8,
    fail: &mut impl FnMut(usize, &str),
) -> ArrayRef {
    let mut b = Decimal128Builder::with_capacity(column.len());
    for (r, v) in column.iter().enumerate() {
        match *v {
            None => b.append_null(),
            Some(raw) if cells == Cells::Text && cells.is_empty(raw) => b.append_null(),
            Some(raw) => match values::parse_decimal(raw, precision, scale) {
                Some(x) => b.append_value(x),
                None => {
                    fail(r, raw);
                    b.append_null()
                }
            },
        }
    }
    Arc::new(
        b.finish()
            .with_precision_and_scale(precision, scale)
            .expect("validated precision"),
    )
}

/// Base64 strings as bytes.
fn binary_column(
    column: &[Option<&str>],
    cells: Cells,
    fail: &mut impl FnMut(usize, &str),
) -> ArrayRef {
    let n = column.len();
    let mut b = BinaryBuilder::with_capacity(n, n * 16);
    for (r, v) in column.iter().enumerate() {
        let Some(raw) = *v else {
            b.append_null();
            continue;
        };
        let bytes = cells.text(raw).and_then(|s| {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .ok()
        });
        match bytes {
            Some(bytes) => b.append_value(bytes),
            None => {
                fail(r, raw);
                b.append_null()
            }
        }
    }
    Arc::new(b.finish())
}

/// Strings unquoted; JSON (and anything not a string) kept as its text.
fn text_column(
    ty: ColumnType,
    cells: Cells,
    column: &[Option<&str>],
    c: usize,
    bad: &mut Vec<BadValue>,
) -> ArrayRef {
    let n = column.len();
    let bytes: usize = column.iter().map(|v| v.map_or(0, str::len)).sum();
    let mut b = StringBuilder::with_capacity(n, bytes);
    for (r, v) in column.iter().enumerate() {
        let Some(raw) = *v else {
            b.append_null();
            continue;
        };
        // A JSON string without escapes is its text between the quotes.
        let plain = cells == Cells::Json
            && raw.len() >= 2
            && raw.starts_with('"')
            && memchr::memchr(b'\\', raw.as_bytes()).is_none();
        if plain {
            match ty {
                ColumnType::Json => b.append_value(raw),
                _ => b.append_value(&raw[1..raw.len() - 1]),
            }
            continue;
        }
        // Nothing that is not Unicode is ever written: a lone surrogate
        // escape would make the table unreadable (plain text has no escapes).
        if let Some(at) = shape::lone_surrogate(raw).filter(|_| cells == Cells::Json) {
            bad.push(BadValue {
                row: r,
                column: c,
                value: Some(snippet(raw, at)),
                message: shape::surrogate_message(raw, at),
            });
            b.append_null();
            continue;
        }
        match (ty, cells.text(raw)) {
            // JSON keeps its text; strings are unquoted; numbers,
            // booleans and objects in a string column keep their JSON text.
            (ColumnType::Json, _) | (_, None) => b.append_value(raw),
            (_, Some(s)) => b.append_value(s),
        }
    }
    Arc::new(b.finish())
}
