//! How Parquet files are written: sizes, compression, partitioning
//! overrides, and the parsers of their command-line forms.

use std::collections::BTreeMap;

use parquet::basic::{Compression, ZstdLevel};

use crate::schema::Partitioning;

/// File sizes and compression of written Parquet files.
#[derive(Debug, Clone)]
pub struct ParquetOptions {
    pub compression: Compression,
    /// A row group is flushed once its encoded size reaches this (memory stays flat).
    pub row_group_bytes: usize,
    /// A file is closed and the next one started once it reaches this size.
    pub file_bytes: usize,
    /// Per-table partitioning replacing the connector's declaration
    /// (`None` in the map: no partitioning).
    pub partition_overrides: BTreeMap<String, Option<Partitioning>>,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        ParquetOptions {
            compression: Compression::ZSTD(ZstdLevel::try_new(3).expect("valid level")),
            row_group_bytes: 64 << 20,
            file_bytes: 256 << 20,
            partition_overrides: BTreeMap::new(),
        }
    }
}

/// Parse `zstd`, `zstd:9`, `snappy` or `none`.
pub fn parse_compression(s: &str) -> std::result::Result<Compression, String> {
    let s = s.trim().to_ascii_lowercase();
    let (name, level) = match s.split_once(':') {
        Some((n, l)) => (n, Some(l)),
        None => (s.as_str(), None),
    };
    match (name, level) {
        ("zstd", None) => Ok(ParquetOptions::default().compression),
        ("zstd", Some(l)) => l
            .parse::<i32>()
            .ok()
            .and_then(|l| ZstdLevel::try_new(l).ok())
            .map(Compression::ZSTD)
            .ok_or_else(|| format!("zstd level {l:?} is not a number from 1 to 22")),
        ("snappy", None) => Ok(Compression::SNAPPY),
        ("none" | "uncompressed", None) => Ok(Compression::UNCOMPRESSED),
        _ => Err(format!(
            "compression {s:?} is not one of zstd, zstd:LEVEL, snappy, none"
        )),
    }
}

/// Parse `--partition-by TABLE=COLUMN[:TRANSFORM]` (or `TABLE=none`).
pub fn parse_partition_override(
    s: &str,
) -> std::result::Result<(String, Option<Partitioning>), String> {
    let (table, spec) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not TABLE=COLUMN[:day|month|year] or TABLE=none"))?;
    let table = table.trim();
    if table.is_empty() {
        return Err(format!("{s:?} names no table"));
    }
    if spec.trim().eq_ignore_ascii_case("none") {
        return Ok((table.into(), None));
    }
    Ok((table.into(), Some(Partitioning::parse(spec)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::PartitionTransform;

    #[test]
    fn compression_names() {
        assert_eq!(parse_compression("snappy"), Ok(Compression::SNAPPY));
        assert_eq!(parse_compression(" NONE "), Ok(Compression::UNCOMPRESSED));
        assert_eq!(
            parse_compression("zstd:9"),
            Ok(Compression::ZSTD(ZstdLevel::try_new(9).unwrap()))
        );
        assert!(parse_compression("zstd:99")
            .unwrap_err()
            .contains("1 to 22"));
        assert!(parse_compression("lzma")
            .unwrap_err()
            .contains("not one of"));
    }

    #[test]
    fn partition_overrides() {
        let (t, p) = parse_partition_override("users=created_at:day").unwrap();
        assert_eq!(t, "users");
        let p = p.unwrap();
        assert_eq!(
            (p.column.as_str(), p.transform),
            ("created_at", PartitionTransform::Day)
        );
        assert_eq!(p.key(), "created_at_day");
        assert_eq!(
            parse_partition_override("users=none").unwrap(),
            ("users".into(), None)
        );
        let (_, p) = parse_partition_override("users=plan").unwrap();
        assert_eq!(p.unwrap().key(), "plan_value");
        assert!(parse_partition_override("users").is_err());
        assert!(parse_partition_override("=x").is_err());
        assert!(parse_partition_override("users=created_at:week")
            .unwrap_err()
            .contains("week"));
    }
}
