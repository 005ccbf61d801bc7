//! A spec table's saved state, typed (version 2):
//!
//! ```json
//! {"v": 2, "cursor": "2024-…", "parents": {"7": "2024-…"}, "step_position": 3000,
//!  "incremental_cursor": "…", "historical_cursor": "…", "historical_limit": "…",
//!  "inferred": {"score": "DOUBLE"}, "last_complete": "2024-…Z"}
//! ```
//!
//! Every key is optional; states written before versions existed had the
//! same keys.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::schema::ColumnType;
use crate::source::scan::{WindowState, STATE_VERSION};
use crate::state::State;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct TableState {
    #[serde(default)]
    pub v: u32,
    /// The largest cursor value read (a top-level table's), as the API wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// A child table's cursor per parent record (its key: the placeholders' values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parents: BTreeMap<String, String>,
    /// A step-size table: where its next scan starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_position: Option<u64>,
    /// A table read by windows: its cursors.
    #[serde(flatten)]
    pub windows: WindowState,
    /// Columns inferred from the records, in the order first seen, with
    /// their Fivetran type names (later syncs type them the same way).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub inferred: IndexMap<String, String>,
    /// When a read of the table last ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_complete: Option<String>,
}

impl TableState {
    pub fn load(state: &State, table: &str) -> Result<TableState> {
        let mut s: TableState = crate::source::scan::load(state, table, "a spec table")?;
        s.v = STATE_VERSION;
        Ok(s)
    }

    /// The cursor of the scan for `parent` (`None`: the table's own).
    pub fn cursor(&self, parent: Option<&str>) -> Option<&String> {
        match parent {
            None => self.cursor.as_ref(),
            Some(k) => self.parents.get(k),
        }
    }

    pub fn set_cursor(&mut self, parent: Option<&str>, c: String) {
        match parent {
            None => self.cursor = Some(c),
            Some(k) => {
                self.parents.insert(k.to_string(), c);
            }
        }
    }

    /// The inferred columns whose saved type is one etl knows.
    pub fn inferred_columns(&self) -> impl Iterator<Item = (&String, ColumnType)> {
        self.inferred
            .iter()
            .filter_map(|(k, v)| ColumnType::parse(v).ok().map(|t| (k, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_reads_the_unversioned_shape() {
        let old = json!({
            "cursor": "2024-01-01", "parents": {"7": "b"}, "step_position": 3000,
            "incremental_cursor": "i", "inferred": {"z": "STRING", "a": "LONG"}, "last_complete": "t"
        });
        let s: TableState = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(s.cursor(Some("7")).map(String::as_str), Some("b"));
        assert_eq!(s.windows.incremental_cursor.as_deref(), Some("i"));
        let order: Vec<_> = s.inferred_columns().map(|(k, _)| k.as_str()).collect();
        assert_eq!(order, ["z", "a"], "first seen first");
        let mut back = serde_json::to_value(&s).unwrap();
        back.as_object_mut().unwrap().remove("v");
        assert_eq!(back, old);
        assert_eq!(
            serde_json::to_value(TableState::default()).unwrap(),
            json!({"v": 0})
        );
    }
}
