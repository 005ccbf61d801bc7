//! Where a lake lives: a local directory or `s3://bucket/prefix`, as an
//! object store (object_store's, the one delta-rs commits through), and the
//! blocking calls the writer thread makes on it.
//!
//! `s3://` takes the standard AWS environment: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for a local endpoint. Delta
//! commits are safe there through S3's conditional writes (`If-None-Match: *`
//! on the log entry), so no locking service is needed.

use std::ops::Range;
use std::sync::{Arc, Once};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use url::Url;

use crate::error::{Error, Result};

/// A lake's location: its URL (the root of every schema in it) and the
/// object store holding it, rooted where delta-rs expects ("/" of the
/// filesystem, or the bucket).
#[derive(Clone)]
pub struct Location {
    /// `file:///abs/dir/` or `s3://bucket/prefix/` (always a trailing slash).
    pub url: Url,
    pub root: Arc<dyn ObjectStore>,
    /// The lake's path inside `root`.
    pub prefix: ObjPath,
    /// As the user gave it (for messages).
    pub shown: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.shown)
    }
}

/// Whether `out` names object storage rather than a local path.
pub fn is_remote(out: &str) -> bool {
    out.contains("://")
}

impl Location {
    /// Parse `--out`: `s3://bucket[/prefix]` or a local directory (made
    /// absolute; with `create`, created if missing, its parent must exist).
    pub fn parse(out: &str, create: bool) -> Result<Location> {
        let shown = out.to_string();
        if is_remote(out) {
            let mut url = Url::parse(out)
                .map_err(|e| Error::Usage(format!("--out {out}: not a valid URL: {e}")))?;
            if url.scheme() != "s3" {
                return Err(Error::Usage(format!(
                    "--out {out}: only s3:// object storage is supported (or give a local directory)"
                )));
            }
            let bucket = url
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| Error::Usage(format!("--out {out}: the URL names no bucket")))?
                .to_string();
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            register_s3();
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .build()
                .map_err(|e| Error::Usage(format!("--out {out}: {}", clean(&e.to_string()))))?;
            let prefix = ObjPath::from(url.path().trim_matches('/'));
            return Ok(Location {
                url,
                root: Arc::new(store),
                prefix,
                shown,
            });
        }
        let path = std::path::Path::new(out);
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| Error::Usage(format!("--out {out}: {e}")))?
                .join(path)
        };
        if abs.is_file() {
            return Err(Error::refused(
                out,
                format!("{out} is a file; a Delta lake is a directory"),
            ));
        }
        if !create && !abs.is_dir() {
            return Err(Error::Usage(format!("there is no Delta lake at {out}")));
        }
        crate::dest::check_parent_exists(&abs)?;
        std::fs::create_dir_all(&abs)
            .map_err(|e| Error::destination(out, format!("creating the directory: {e}")))?;
        let abs = abs
            .canonicalize()
            .map_err(|e| Error::destination(out, format!("resolving the directory: {e}")))?;
        let url = Url::from_directory_path(&abs)
            .map_err(|_| Error::Usage(format!("--out {out}: not a usable directory path")))?;
        let prefix = ObjPath::from_url_path(url.path())
            .map_err(|e| Error::Usage(format!("--out {out}: {e}")))?;
        Ok(Location {
            url,
            root: Arc::new(object_store::local::LocalFileSystem::new()),
            prefix,
            shown,
        })
    }

    /// The URL of `rel` (a schema's directory or a table's) under the lake.
    pub fn join(&self, rel: &str) -> Url {
        let mut u = self.url.clone();
        let path = format!("{}{}/", u.path(), rel.trim_matches('/'));
        u.set_path(&path);
        u
    }

    /// The store path of `rel` under the lake.
    pub fn path(&self, rel: &str) -> ObjPath {
        raw_join(&self.prefix, rel)
    }
}

/// `base/rel` as the object's key, byte for byte: a partition directory's
/// Hive escapes (`region_value=us%2Feast`) stay literal, as Spark and
/// delta-rs name them (the log holds the path URI-encoded once more), on
/// S3 and on local disk alike.
fn raw_join(base: &ObjPath, rel: &str) -> ObjPath {
    let rel: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    if rel.is_empty() {
        return base.clone();
    }
    let joined = match base.as_ref() {
        "" => rel.join("/"),
        b => format!("{b}/{}", rel.join("/")),
    };
    ObjPath::parse(&joined)
        .unwrap_or_else(|_| rel.iter().fold(base.clone(), |p, part| p.join(*part)))
}

/// Teach delta-rs the `s3://` scheme without its AWS crate (which brings the
/// AWS SDK and a DynamoDB lock): the store is object_store's, configured
/// from the environment, and commits use its conditional puts.
fn register_s3() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let url = Url::parse("s3://").expect("valid");
        deltalake_core::logstore::object_store_factories().insert(url.clone(), Arc::new(S3Factory));
        deltalake_core::logstore::logstore_factories().insert(url, Arc::new(S3Factory));
    });
}

struct S3Factory;

impl deltalake_core::logstore::ObjectStoreFactory for S3Factory {
    fn parse_url_opts(
        &self,
        url: &Url,
        _config: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<(Arc<dyn ObjectStore>, ObjPath)> {
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_url(url.as_str())
            .build()?;
        Ok((Arc::new(store), ObjPath::from(url.path())))
    }
}

impl deltalake_core::logstore::LogStoreFactory for S3Factory {
    fn with_options(
        &self,
        prefixed_store: Arc<dyn ObjectStore>,
        root_store: Arc<dyn ObjectStore>,
        location: &Url,
        options: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<deltalake_core::logstore::LogStoreRef> {
        Ok(deltalake_core::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

/// An object store error as a message: the query string of any URL in
/// it (a presigned URL's signature) is cut off.
pub fn clean(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut in_url = false;
    let mut skipping = false;
    for (i, c) in msg.char_indices() {
        if c.is_whitespace() || c == '"' || c == ')' {
            in_url = false;
            skipping = false;
        } else if !in_url
            && msg[i..].starts_with("http")
            && msg[i..]
                .split_whitespace()
                .next()
                .is_some_and(|w| w.contains("://"))
        {
            in_url = true;
        }
        if in_url && c == '?' && !skipping {
            skipping = true;
            out.push_str("?…");
            continue;
        }
        if !skipping {
            out.push(c);
        }
    }
    out
}

/// Blocking access to a lake's objects from the writer thread, on the
/// destination's own runtime.
#[derive(Clone)]
pub struct ObjectIo {
    pub loc: Location,
    pub rt: tokio::runtime::Handle,
    /// The schema directory every path is relative to.
    pub base: ObjPath,
}

impl ObjectIo {
    fn path(&self, rel: &str) -> ObjPath {
        raw_join(&self.base, rel)
    }

    fn err(&self, what: String, e: impl std::fmt::Display) -> Error {
        Error::destination(
            self.loc.shown.clone(),
            format!("{what}: {}", clean(&e.to_string())),
        )
    }

    /// A new object at `rel`, written as it comes: buffered up to
    /// [`UPLOAD_PART`], then sent as a multipart upload, so a file of any
    /// size costs that much memory.
    pub fn upload(&self, rel: &str) -> Upload {
        let w = object_store::buffered::BufWriter::with_capacity(
            self.loc.root.clone(),
            self.path(rel),
            UPLOAD_PART,
        );
        Upload {
            w,
            rt: self.rt.clone(),
            bytes: 0,
            rel: rel.to_string(),
            shown: self.loc.shown.clone(),
        }
    }

    /// Remove `rel`, if it is there.
    pub fn delete(&self, rel: &str) {
        let path = self.path(rel);
        let store = self.loc.root.clone();
        let _ = self.rt.block_on(async move { store.delete(&path).await });
    }

    /// The size of `rel`, if it exists.
    pub fn size(&self, rel: &str) -> Option<u64> {
        let path = self.path(rel);
        let store = self.loc.root.clone();
        self.rt
            .block_on(async move { store.head(&path).await })
            .ok()
            .map(|m| m.size)
    }

    /// The directory names directly under `rel`.
    pub fn dirs(&self, rel: &str) -> Result<Vec<String>> {
        let path = self.path(rel);
        let store = self.loc.root.clone();
        let listed = self
            .rt
            .block_on(async move { store.list_with_delimiter(Some(&path)).await })
            .map_err(|e| {
                let text = e.to_string();
                match self.loc.url.host_str() {
                    Some(bucket)
                        if text.contains("NoSuchBucket") || text.contains("404 Not Found") =>
                    {
                        Error::Usage(format!(
                            "--out {}: bucket {bucket} does not exist at {} (create it first)",
                            self.loc.shown,
                            std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "AWS S3".into())
                        ))
                    }
                    _ => self.err(
                        format!(
                            "listing {}",
                            if rel.is_empty() { "the schema" } else { rel }
                        ),
                        e,
                    ),
                }
            })?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Whether anything at all is stored under `rel`.
    pub fn any_under(&self, rel: &str) -> Result<bool> {
        let path = self.path(rel);
        let store = self.loc.root.clone();
        self.rt
            .block_on(async move {
                let mut s = store.list(Some(&path));
                s.next().await.transpose()
            })
            .map(|o| o.is_some())
            .map_err(|e| self.err(format!("listing {rel}"), e))
    }

    /// A Parquet reader of `rel` fetching byte ranges as it reads.
    pub fn reader(&self, rel: &str, size: Option<u64>) -> RemoteFile {
        RemoteFile {
            store: self.loc.root.clone(),
            path: self.path(rel),
            size,
        }
    }

    /// Read every object under `rel` (small files: a table's log in tests).
    pub fn list(&self, rel: &str) -> Result<Vec<String>> {
        let path = self.path(rel);
        let store = self.loc.root.clone();
        self.rt
            .block_on(async move {
                store
                    .list(Some(&path))
                    .map_ok(|m| m.location.to_string())
                    .try_collect::<Vec<_>>()
                    .await
            })
            .map_err(|e| self.err(format!("listing {rel}"), e))
    }
}

/// Bytes held before a file goes out as a multipart upload's part (S3's
/// parts are at least 5 MiB).
pub const UPLOAD_PART: usize = 8 << 20;

/// An object being written (see [`ObjectIo::upload`]): a blocking `Write`
/// for the Parquet writer.
pub struct Upload {
    w: object_store::buffered::BufWriter,
    rt: tokio::runtime::Handle,
    bytes: u64,
    rel: String,
    shown: String,
}

impl std::io::Write for Upload {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncWriteExt;
        let w = &mut self.w;
        self.rt.block_on(w.write_all(buf))?;
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Parts go out as they fill; the object is whole only at `finish`.
        Ok(())
    }
}

impl Upload {
    /// Complete the object; its size.
    pub fn finish(mut self) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let w = &mut self.w;
        self.rt.block_on(w.shutdown()).map_err(|e| {
            Error::destination(
                self.shown.clone(),
                format!("writing {}: {}", self.rel, clean(&e.to_string())),
            )
        })?;
        Ok(self.bytes)
    }
}

/// A Parquet file in the object store, read by ranges (the footer, then the
/// column chunks a projection needs), as parquet's async reader asks.
pub struct RemoteFile {
    store: Arc<dyn ObjectStore>,
    path: ObjPath,
    size: Option<u64>,
}

impl AsyncFileReader for RemoteFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let store = self.store.clone();
        let path = self.path.clone();
        async move {
            store
                .get_range(&path, range)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let store = self.store.clone();
        let path = self.path.clone();
        async move {
            store
                .get_ranges(&path, &ranges)
                .await
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = match self.size {
                Some(s) => s,
                None => {
                    let m = self
                        .store
                        .head(&self.path)
                        .await
                        .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
                    self.size = Some(m.size);
                    m.size
                }
            };
            let md = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 << 10))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(md))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_never_reach_messages() {
        assert_eq!(
            clean("GET https://b.s3.amazonaws.com/k?X-Amz-Signature=abc123 failed"),
            "GET https://b.s3.amazonaws.com/k?… failed"
        );
        assert_eq!(clean("no url here"), "no url here");
        assert_eq!(
            clean("got <?xml version=\"1.0\"?>"),
            "got <?xml version=\"1.0\"?>"
        );
    }

    #[test]
    fn a_local_lake_is_a_file_url_with_its_paths_inside() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("lake");
        let loc = Location::parse(&out.to_string_lossy(), true).unwrap();
        assert!(out.is_dir());
        assert_eq!(loc.url.scheme(), "file");
        assert!(loc.url.path().ends_with("/lake/"), "{}", loc.url);
        assert!(loc
            .join("prefect/flows")
            .path()
            .ends_with("/lake/prefect/flows/"));
        assert!(loc
            .path("prefect/flows")
            .as_ref()
            .ends_with("lake/prefect/flows"));
        // Not created when only reading.
        let missing = dir.path().join("nope");
        let e = Location::parse(&missing.to_string_lossy(), false).unwrap_err();
        assert!(e.to_string().contains("no Delta lake"), "{e}");
        assert!(!missing.exists());
        // Only s3:// object storage.
        let e = Location::parse("gs://bucket/x", true).unwrap_err();
        assert!(e.to_string().contains("only s3://"), "{e}");
        let e = Location::parse("s3:///x", true).unwrap_err();
        assert!(e.to_string().contains("no bucket"), "{e}");
    }
}
