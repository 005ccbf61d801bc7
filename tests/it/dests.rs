//! Both destinations behind one handle, and one way to read either back: the
//! DuckDB file itself, or DuckDB views over the Parquet dataset
//! (`read_parquet` with hive partitioning and union by name), so every
//! conformance test runs the same SQL against both.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use etl::dest::duckdb::DuckDbDestination;
use etl::dest::parquet::{ParquetDestination, ParquetOptions};
use etl::dest::Destination;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    DuckDb,
    Parquet,
    /// Delta tables in a local directory (schema `main`).
    Delta,
}

impl Kind {
    /// Where this kind of destination lives inside a test directory.
    pub fn path(self, dir: &Path) -> PathBuf {
        match self {
            Kind::DuckDb => dir.join("warehouse.duckdb"),
            Kind::Parquet => dir.join("lake"),
            Kind::Delta => dir.join("delta"),
        }
    }

    /// The `etl sync` flags that choose this kind for a new `--out`.
    pub fn format_args(self) -> &'static [&'static str] {
        match self {
            Kind::Delta => &["--format", "delta"],
            _ => &[],
        }
    }

    pub fn open(self, path: &Path) -> AnyDest {
        self.open_with(path, ParquetOptions::default())
    }

    pub fn open_with(self, path: &Path, opts: ParquetOptions) -> AnyDest {
        match self {
            Kind::DuckDb => AnyDest::DuckDb(DuckDbDestination::open(path).unwrap()),
            Kind::Parquet => AnyDest::Parquet(ParquetDestination::open_with(path, opts).unwrap()),
            Kind::Delta => {
                let ns = etl::dest::namespace::Namespace::new(None, "main", "c").unwrap();
                AnyDest::Delta(
                    ParquetDestination::open_delta(&path.to_string_lossy(), opts, &ns, true)
                        .unwrap(),
                )
            }
        }
    }
}

pub enum AnyDest {
    DuckDb(DuckDbDestination),
    Parquet(ParquetDestination),
    Delta(ParquetDestination),
}

impl AnyDest {
    /// Run `f` with a connection that sees the committed tables.
    pub fn read<T>(&self, f: impl FnOnce(&duckdb::Connection) -> T) -> T {
        match self {
            AnyDest::DuckDb(d) => f(d.connection()),
            AnyDest::Parquet(d) => f(&parquet_views(d.root())),
            AnyDest::Delta(d) => f(&parquet_views(d.root().parent().unwrap())),
        }
    }

    /// `sql`'s rows as sorted text.
    pub fn grid(&self, sql: &str) -> Vec<String> {
        self.read(|c| grid(c, sql))
    }

    pub fn parquet(&mut self) -> &mut ParquetDestination {
        match self {
            AnyDest::Parquet(d) | AnyDest::Delta(d) => d,
            AnyDest::DuckDb(_) => panic!("not a Parquet destination"),
        }
    }
}

impl Deref for AnyDest {
    type Target = dyn Destination;
    fn deref(&self) -> &Self::Target {
        match self {
            AnyDest::DuckDb(d) => d,
            AnyDest::Parquet(d) | AnyDest::Delta(d) => d,
        }
    }
}

impl DerefMut for AnyDest {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            AnyDest::DuckDb(d) => d,
            AnyDest::Parquet(d) | AnyDest::Delta(d) => d,
        }
    }
}

/// A reader of `out` as it is on disk: the DuckDB file, or views over a
/// lake (a schema per `<out>/<schema>/` dataset, or `main` for a dataset at
/// `out` itself). When etl wrote one schema, unqualified names resolve in it.
pub fn reader(out: &Path) -> duckdb::Connection {
    if out.is_dir() {
        return parquet_views(out);
    }
    let conn = duckdb::Connection::open(out).unwrap();
    let schemas = etl_schemas(&conn);
    if let [only] = schemas.as_slice() {
        conn.execute_batch(&format!("USE \"{only}\"")).unwrap();
    }
    conn
}

/// The schemas of `conn`'s database that hold an etl state table.
pub fn etl_schemas(conn: &duckdb::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT DISTINCT table_schema FROM information_schema.tables \
             WHERE table_catalog = current_database() AND table_name = '_etl_state' ORDER BY 1",
        )
        .unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, String>(0)).unwrap();
    rows.map(Result::unwrap).collect()
}

/// An in-memory DuckDB with one view per table directory of the lake at
/// `root`: schema `main` for a dataset at `root` itself, one schema per
/// `root/<schema>/` dataset (the current one when there is only one).
pub fn parquet_views(root: &Path) -> duckdb::Connection {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    if root.join("_etl").is_dir() {
        dataset_views(&conn, "main", root);
        return conn;
    }
    let mut schemas = Vec::new();
    for e in std::fs::read_dir(root).unwrap().flatten() {
        if e.path().join("_etl_state").join("_delta_log").is_dir() {
            let schema = e.file_name().to_string_lossy().into_owned();
            conn.execute_batch(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .unwrap();
            delta_views(&conn, &schema, &e.path());
            schemas.push(schema);
        } else if e.path().join("_etl").is_dir() {
            let schema = e.file_name().to_string_lossy().into_owned();
            conn.execute_batch(&format!("CREATE SCHEMA \"{schema}\""))
                .unwrap();
            dataset_views(&conn, &schema, &e.path());
            schemas.push(schema);
        }
    }
    if let [only] = schemas.as_slice() {
        conn.execute_batch(&format!("USE \"{only}\"")).unwrap();
    }
    conn
}

fn dataset_views(conn: &duckdb::Connection, schema: &str, dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "_etl" || !e.path().is_dir() {
            continue;
        }
        let glob = e.path().join("**").join("*.parquet");
        conn.execute_batch(&format!(
            "CREATE VIEW \"{schema}\".\"{name}\" AS SELECT * FROM read_parquet('{}', hive_partitioning = true, union_by_name = true)",
            glob.display()
        ))
        .unwrap();
    }
}

/// Views of a Delta schema's tables over exactly the files their logs
/// hold live (replayed here from the JSON commits, independently of etl).
fn delta_views(conn: &duckdb::Connection, schema: &str, dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !e.path().join("_delta_log").is_dir() {
            continue;
        }
        let files = delta_live_files(&e.path());
        assert!(
            !files.is_empty(),
            "table {name} has no live file: {:?}",
            std::fs::read_dir(e.path().join("_delta_log"))
                .unwrap()
                .flatten()
                .map(|f| (
                    f.file_name(),
                    std::fs::read_to_string(f.path()).unwrap_or_default()
                ))
                .collect::<Vec<_>>()
        );
        let list: Vec<String> = files
            .iter()
            .map(|f| format!("'{}'", e.path().join(f).display()))
            .collect();
        conn.execute_batch(&format!(
            "CREATE VIEW \"{schema}\".\"{name}\" AS SELECT * FROM read_parquet([{}], hive_partitioning = true, union_by_name = true)",
            list.join(", ")
        ))
        .unwrap();
    }
}

/// The data files a Delta table's log holds live: every JSON commit's
/// adds and removes replayed in version order.
pub fn delta_live_files(table: &Path) -> Vec<String> {
    let log = table.join("_delta_log");
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&log)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.starts_with('.') && !name.contains(".tmp")
        })
        .collect();
    commits.sort();
    let mut live = std::collections::BTreeSet::new();
    for c in commits {
        for line in std::fs::read_to_string(&c).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let decode = |p: &serde_json::Value| {
                url::Url::parse(&format!("file:///{}", p.as_str().unwrap()))
                    .unwrap()
                    .path_segments()
                    .unwrap()
                    .map(etl::dest::parquet::unescape_partition)
                    .collect::<Vec<_>>()
                    .join("/")
            };
            if let Some(a) = v.get("add") {
                live.insert(decode(&a["path"]));
            }
            if let Some(r) = v.get("remove") {
                live.remove(&decode(&r["path"]));
            }
        }
    }
    live.into_iter().collect()
}

/// A query's rows as sorted `Debug` text, cells joined by `|`.
pub fn grid(conn: &duckdb::Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(sql).unwrap();
    let mut out: Vec<String> = stmt
        .query_map([], |r| {
            let mut cells = Vec::new();
            let mut i = 0;
            while let Ok(v) = r.get::<_, duckdb::types::Value>(i) {
                cells.push(format!("{v:?}"));
                i += 1;
            }
            Ok(cells.join("|"))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    out.sort();
    out
}

/// Both kinds of each named test: `name` runs as `duckdb::name` and `parquet::name`.
macro_rules! for_both_destinations {
    ($($name:ident),* $(,)?) => {
        mod duckdb {
            $( #[test] fn $name() { super::$name(crate::dests::Kind::DuckDb) } )*
        }
        mod parquet {
            $( #[test] fn $name() { super::$name(crate::dests::Kind::Parquet) } )*
        }
        mod delta {
            $( #[test] fn $name() { super::$name(crate::dests::Kind::Delta) } )*
        }
    };
}
pub(crate) use for_both_destinations;

/// Async variant of [`for_both_destinations`] (tests that sync from the playground).
macro_rules! for_both_destinations_async {
    ($($name:ident),* $(,)?) => {
        mod duckdb {
            $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(crate::dests::Kind::DuckDb).await } )*
        }
        mod parquet {
            $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(crate::dests::Kind::Parquet).await } )*
        }
    };
}
pub(crate) use for_both_destinations_async;

/// [`for_both_destinations_async`] and a local Delta lake too.
macro_rules! for_every_destination_async {
    ($($name:ident),* $(,)?) => {
        crate::dests::for_both_destinations_async!($($name),*);
        mod delta {
            $( #[tokio::test(flavor = "multi_thread")] async fn $name() { super::$name(crate::dests::Kind::Delta).await } )*
        }
    };
}
pub(crate) use for_every_destination_async;
