//! File-system helpers of the Parquet destination: Hive's escaping of
//! partition values, atomic replacement of a small file, directory fsync.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use super::NULL_PARTITION;

/// Percent-encode what cannot appear in a directory name (Hive's rules).
pub(super) fn escape_partition(v: &str) -> String {
    if v.is_empty() {
        return NULL_PARTITION.into();
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c.is_control()
            || matches!(
                c,
                '"' | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '\x7f'
                    | '{'
                    | '['
                    | ']'
                    | '^'
            )
        {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Undo `escape_partition`'s `%XX`.
pub fn unescape_partition(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && v.is_char_boundary(i + 3) {
            if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Write `path` so a reader sees the old or the new content, never a mix.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        sync_dir(d)?;
    }
    Ok(())
}

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_are_unescaped() {
        assert_eq!(unescape_partition("a%3Ab%2F"), "a:b/");
        assert_eq!(unescape_partition("100%"), "100%");
        assert_eq!(unescape_partition("2024-05"), "2024-05");
        for v in ["us/east", "a=b:c%", "é ok"] {
            assert_eq!(unescape_partition(&escape_partition(v)), v);
        }
    }

    #[test]
    fn partition_values_are_escaped_like_hive() {
        assert_eq!(escape_partition("us/east"), "us%2Feast");
        assert_eq!(escape_partition("a=b:c%"), "a%3Db%3Ac%25");
        assert_eq!(escape_partition("é ok"), "é ok");
        assert_eq!(escape_partition(""), NULL_PARTITION);
        assert_eq!(
            escape_partition(".."),
            "..",
            "no separator, stays inside its directory"
        );
    }
}
