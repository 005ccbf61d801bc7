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
}

impl Kind {
    /// Where this kind of destination lives inside a test directory.
    pub fn path(self, dir: &Path) -> PathBuf {
        match self {
            Kind::DuckDb => dir.join("warehouse.duckdb"),
            Kind::Parquet => dir.join("lake"),
        }
    }

    pub fn open(self, path: &Path) -> AnyDest {
        self.open_with(path, ParquetOptions::default())
    }

    pub fn open_with(self, path: &Path, opts: ParquetOptions) -> AnyDest {
        match self {
            Kind::DuckDb => AnyDest::DuckDb(DuckDbDestination::open(path).unwrap()),
            Kind::Parquet => AnyDest::Parquet(ParquetDestination::open_with(path, opts).unwrap()),
        }
    }
}

pub enum AnyDest {
    DuckDb(DuckDbDestination),
    Parquet(ParquetDestination),
}

impl AnyDest {
    /// Run `f` with a connection that sees the committed tables.
    pub fn read<T>(&self, f: impl FnOnce(&duckdb::Connection) -> T) -> T {
        match self {
            AnyDest::DuckDb(d) => f(d.connection()),
            AnyDest::Parquet(d) => f(&parquet_views(d.root())),
        }
    }

    /// `sql`'s rows as sorted text.
    pub fn grid(&self, sql: &str) -> Vec<String> {
        self.read(|c| grid(c, sql))
    }

    pub fn parquet(&mut self) -> &mut ParquetDestination {
        match self {
            AnyDest::Parquet(d) => d,
            AnyDest::DuckDb(_) => panic!("not a Parquet destination"),
        }
    }
}

impl Deref for AnyDest {
    type Target = dyn Destination;
    fn deref(&self) -> &Self::Target {
        match self {
            AnyDest::DuckDb(d) => d,
            AnyDest::Parquet(d) => d,
        }
    }
}

impl DerefMut for AnyDest {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            AnyDest::DuckDb(d) => d,
            AnyDest::Parquet(d) => d,
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
        if e.path().join("_etl").is_dir() {
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
