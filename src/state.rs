//! Per-connector state: one JSON value per stream (cursors, bookmarks), in a
//! versioned envelope. Destinations store it next to the data it covers and
//! hand it back at the start of the next sync.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Version of the state envelope this build writes.
pub const STATE_VERSION: u32 = 1;

/// The saved progress of one connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub version: u32,
    /// Stream (table) name → that stream's own state.
    #[serde(default)]
    pub streams: BTreeMap<String, serde_json::Value>,
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            streams: BTreeMap::new(),
        }
    }
}

impl State {
    pub fn stream(&self, name: &str) -> Option<&serde_json::Value> {
        self.streams.get(name)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("state serialises")
    }

    /// Parse saved state, refusing formats this build does not know.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, Error> {
        let s: State = serde_json::from_str(text)
            .map_err(|e| Error::destination(origin, format!("saved state is not valid: {e}")))?;
        if s.version > STATE_VERSION {
            return Err(Error::destination(
                origin,
                format!(
                    "saved state has format version {} but this etl understands up to {STATE_VERSION}; upgrade etl",
                    s.version
                ),
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_newer_versions() {
        let mut s = State::default();
        s.streams
            .insert("users".into(), serde_json::json!({"after": "u1"}));
        let back = State::from_json(&s.to_json(), "t").unwrap();
        assert_eq!(back, s);
        let e = State::from_json(r#"{"version": 99, "streams": {}}"#, "t").unwrap_err();
        assert!(e.to_string().contains("version 99"), "{e}");
    }
}
