//! How tables and columns are named in the destination.
//!
//! [`Naming::Fivetran`] (the default) names them as Fivetran does, so that
//! tables land exactly as the Connector SDK's tester (`fivetran debug`)
//! lands them: `createdAt` → `created_at`, `val1` → `val_1`, accents
//! removed, anything else than ASCII letters, digits and `_` turned into
//! `_`, system columns `_fivetran_synced`, `_fivetran_deleted` and
//! `_fivetran_id`. [`Naming::Source`] keeps the names the source uses and
//! etl's own system columns (`_synced_at`, `_etl_deleted`, `_etl_id`).
//!
//! The rules (docs/naming.md has them with examples) are a port of the
//! tester's: each name is renamed on its own, and two source names that
//! become one are not told apart (the first one wins, with a warning).

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

use crate::schema::{ColumnSource, TableSchema};

/// The naming a dataset is written with; recorded in the dataset, so every
/// later sync into it uses the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Naming {
    /// Fivetran's naming rules and `_fivetran_*` system columns.
    #[default]
    Fivetran,
    /// The source's names and etl's `_etl_*` / `_synced_at` system columns.
    Source,
}

impl Naming {
    pub fn parse(s: &str) -> Result<Naming, String> {
        match s {
            "fivetran" => Ok(Naming::Fivetran),
            "source" => Ok(Naming::Source),
            other => Err(format!("naming {other:?} is not one of fivetran, source")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Naming::Fivetran => "fivetran",
            Naming::Source => "source",
        }
    }

    /// A table's name in the destination.
    pub fn table(self, name: &str) -> String {
        match self {
            Naming::Fivetran => fivetran_table(name),
            Naming::Source => name.to_string(),
        }
    }

    /// A column's name in the destination.
    pub fn column(self, name: &str) -> String {
        match self {
            Naming::Fivetran => fivetran_column(name),
            Naming::Source => name.to_string(),
        }
    }

    /// The soft-delete flag every table has.
    pub fn deleted(self) -> &'static str {
        match self {
            Naming::Fivetran => "_fivetran_deleted",
            Naming::Source => "_etl_deleted",
        }
    }

    /// The time the sync wrote the row; `None`: the connector's own name.
    pub fn synced(self) -> Option<&'static str> {
        match self {
            Naming::Fivetran => Some("_fivetran_synced"),
            Naming::Source => None,
        }
    }

    /// The surrogate key of a table without a primary key; `None`: the
    /// connector's own name.
    pub fn row_id(self) -> Option<&'static str> {
        match self {
            Naming::Fivetran => Some("_fivetran_id"),
            Naming::Source => None,
        }
    }
}

impl std::fmt::Display for Naming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A column name by Fivetran's rules.
pub fn fivetran_column(name: &str) -> String {
    let ascii: String = transliterate(name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // (The tester also puts `_` in front of a name that starts with anything
    // but a letter, digit or `_`: after the replacement, none does.)
    single_underscore_case(&ascii)
}

/// A table name by Fivetran's rules: a column name without the leading
/// underscores in front of a letter (`_private` → `private`).
pub fn fivetran_table(name: &str) -> String {
    let safe = fivetran_column(name);
    let trimmed = safe.trim_start_matches('_');
    if trimmed.len() < safe.len() && trimmed.starts_with(|c: char| c.is_ascii_alphabetic()) {
        trimmed.to_string()
    } else {
        safe
    }
}

/// Accents removed (`é` → `e`): the name decomposed, combining marks
/// dropped. A name of ASCII letters, digits, `_`, `-` and `.` is left as is.
fn transliterate(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return name.to_string();
    }
    name.nfd()
        .filter(|c| !is_combining_mark(*c))
        .nfc()
        .collect()
}

/// Lower case, with `_` before each new word: a capital after a lower-case
/// letter, or a switch between digits and non-digits; runs of `_` become one.
fn single_underscore_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut previous = '\0';
    for c in name.chars() {
        if (previous.is_ascii_lowercase() && c.is_ascii_uppercase())
            || (previous.is_ascii_digit() != c.is_ascii_digit())
        {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        previous = c;
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if !(c == '_' && collapsed.ends_with('_')) {
            collapsed.push(c);
        }
    }
    collapsed
}

/// Renames a connector's tables and batches for the destination: the
/// boundary between the source's names (which connectors and their state
/// keep) and the destination's.
pub struct Renamer {
    naming: Naming,
    /// Per source table: the schema it was renamed from, the renamed one,
    /// and each source column's destination name (`None`: dropped, another
    /// column took its name first).
    tables: HashMap<String, Renamed>,
}

struct Renamed {
    source: Arc<TableSchema>,
    dest: Arc<TableSchema>,
    columns: HashMap<String, Option<String>>,
}

impl Renamer {
    pub fn new(naming: Naming) -> Self {
        Renamer {
            naming,
            tables: HashMap::new(),
        }
    }

    pub fn naming(&self) -> Naming {
        self.naming
    }

    /// The destination's schema of `t`.
    pub fn table(&mut self, t: &Arc<TableSchema>) -> Arc<TableSchema> {
        self.renamed(t).dest.clone()
    }

    fn renamed(&mut self, t: &Arc<TableSchema>) -> &Renamed {
        let stale = self
            .tables
            .get(&t.name)
            .is_none_or(|r| !Arc::ptr_eq(&r.source, t));
        if stale {
            let r = rename_table(self.naming, t);
            self.tables.insert(t.name.clone(), r);
        }
        &self.tables[&t.name]
    }

    /// The destination's name of column `name` of `t`; `None`: dropped.
    pub fn column(&mut self, t: &Arc<TableSchema>, name: &str) -> Option<String> {
        let naming = self.naming;
        match self.renamed(t).columns.get(name) {
            Some(c) => c.clone(),
            None => Some(naming.column(name)),
        }
    }

    /// `batch` (columns of `t`) with the destination's column names; the
    /// error says why Arrow refused the renamed batch.
    pub fn batch(
        &mut self,
        t: &Arc<TableSchema>,
        batch: RecordBatch,
    ) -> std::result::Result<RecordBatch, String> {
        if self.naming == Naming::Source {
            return Ok(batch);
        }
        let schema = batch.schema();
        let mut fields = Vec::with_capacity(schema.fields().len());
        let mut columns = Vec::with_capacity(schema.fields().len());
        let mut taken: Vec<String> = Vec::new();
        for (f, col) in schema.fields().iter().zip(batch.columns()) {
            let Some(name) = self.column(t, f.name()) else {
                continue;
            };
            if taken.contains(&name) {
                continue;
            }
            fields.push(f.as_ref().clone().with_name(name.clone()));
            columns.push(col.clone());
            taken.push(name);
        }
        let renamed = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        RecordBatch::try_new(renamed, columns)
            .map_err(|e| format!("renaming a batch of table {}: {e}", t.name))
    }
}

fn rename_table(naming: Naming, t: &Arc<TableSchema>) -> Renamed {
    if naming == Naming::Source {
        return Renamed {
            source: t.clone(),
            dest: t.clone(),
            columns: t
                .columns
                .iter()
                .map(|c| (c.name.clone(), Some(c.name.clone())))
                .collect(),
        };
    }
    let mut dest: TableSchema = (**t).clone();
    dest.name = naming.table(&t.name);
    dest.deleted_column = naming.deleted();
    let mut map: HashMap<String, Option<String>> = HashMap::new();
    let mut kept = Vec::with_capacity(t.columns.len());
    let mut first: HashMap<String, String> = HashMap::new();
    for c in &t.columns {
        let name = match c.source {
            ColumnSource::SyncedAt => naming.synced().map(String::from),
            ColumnSource::RowHash | ColumnSource::FivetranId => naming.row_id().map(String::from),
            _ => None,
        }
        .unwrap_or_else(|| naming.column(&c.name));
        if let Some(earlier) = first.get(&name) {
            tracing::warn!(
                table = %dest.name,
                "columns {earlier:?} and {:?} both become {name:?}: a row keeps only the value of the first",
                c.name
            );
            map.insert(c.name.clone(), None);
            continue;
        }
        first.insert(name.clone(), c.name.clone());
        map.insert(c.name.clone(), Some(name.clone()));
        let mut c = c.clone();
        c.name = name;
        kept.push(c);
    }
    dest.columns = kept;
    dest.primary_key = t
        .primary_key
        .iter()
        .filter_map(|k| map.get(k).cloned().flatten())
        .collect();
    if let Some(p) = &mut dest.partition_by {
        if let Some(Some(c)) = map.get(&p.column) {
            p.column = c.clone();
        }
    }
    Renamed {
        source: t.clone(),
        dest: Arc::new(dest),
        columns: map,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the tester's own functions (fivetran-connector-sdk 3.0.0,
    /// `redshift_safe` and `safe_drop_underscores`) give for each name.
    #[test]
    fn names_as_the_tester_names_them() {
        let cases = [
            ("createdAt", "created_at", "created_at"),
            ("updatedAt", "updated_at", "updated_at"),
            ("val1", "val_1", "val_1"),
            ("ID", "id", "id"),
            ("HTTPServer", "httpserver", "httpserver"),
            ("user.login", "user_login", "user_login"),
            ("2fa", "_2_fa", "_2_fa"),
            ("first name", "first_name", "first_name"),
            ("Ünïcode Näme", "unicode_name", "unicode_name"),
            ("_private", "_private", "private"),
            ("__x", "_x", "x"),
            ("_1a", "_1_a", "_1_a"),
            ("a-b-c", "a_b_c", "a_b_c"),
            ("x__y", "x_y", "x_y"),
            ("日本語", "_", "_"),
            ("über_2Cool", "uber_2_cool", "uber_2_cool"),
            ("camelCaseID9x", "camel_case_id_9_x", "camel_case_id_9_x"),
            ("", "", ""),
            ("a", "a", "a"),
            ("A1B2", "a_1_b_2", "a_1_b_2"),
            ("select", "select", "select"),
            ("Order", "order", "order"),
            ("e\u{301}t\u{e9}", "ete", "ete"),
            ("col$$", "col_", "col_"),
            ("_", "_", "_"),
            ("__", "_", "_"),
            ("9", "_9", "_9"),
            ("leading space", "leading_space", "leading_space"),
            (" ", "_", "_"),
            ("naïve-café", "naive_cafe", "naive_cafe"),
            ("MixedCASE_Name", "mixed_case_name", "mixed_case_name"),
            ("v2.0", "v_2_0", "v_2_0"),
            ("x\u{a0}y", "x_y", "x_y"),
        ];
        for (name, column, table) in cases {
            assert_eq!(fivetran_column(name), column, "column {name:?}");
            assert_eq!(fivetran_table(name), table, "table {name:?}");
        }
    }

    #[test]
    fn source_naming_keeps_names() {
        assert_eq!(Naming::Source.column("createdAt"), "createdAt");
        assert_eq!(Naming::Source.table("_private"), "_private");
        assert_eq!(Naming::parse("source"), Ok(Naming::Source));
        assert!(Naming::parse("Fivetran").is_err());
    }
}
