//! `_etl/state.json`: the format version, each connector's committed
//! state and each table's manifest (columns, partitioning, live files),
//! and the pending record of a commit in flight.

use super::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Manifest {
    pub(super) format: String,
    pub(super) version: u32,
    /// Number of the last commit (file names carry the commit that wrote them).
    pub(super) commit: u64,
    #[serde(default)]
    pub(super) connectors: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub(super) tables: BTreeMap<String, TableManifest>,
    /// How the tables are named (none: written before namings were recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) naming: Option<crate::naming::Naming>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            commit: 0,
            connectors: BTreeMap::new(),
            tables: BTreeMap::new(),
            naming: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TableManifest {
    /// The connector that created the table (none: before tables had owners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) owner: Option<String>,
    #[serde(default)]
    pub(super) primary_key: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) partition_by: Option<String>,
    pub(super) columns: Vec<ManifestColumn>,
    pub(super) files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ManifestColumn {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) ty: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileEntry {
    /// Relative to the table directory.
    pub(super) path: String,
    pub(super) rows: u64,
}

/// The commit point: what step 3 and 4 of publishing must finish.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Pending {
    pub(super) manifest: Manifest,
    /// Temporary → final paths, relative to the dataset root.
    pub(super) renames: Vec<(String, String)>,
    /// Replaced files, relative to the dataset root.
    pub(super) removes: Vec<String>,
}
