//! The `etl` command line: parse, set up logging, call the library, map the
//! outcome to an exit code (0 success, 1 sync failure, 2 user error, 3
//! stopped by the source's quota with the data read so far committed, 4
//! destination busy, 130/143 interrupted by SIGINT/SIGTERM and rolled back).

// See lib.rs: errors are cold-path values carrying their context.
#![allow(clippy::result_large_err)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// `println!` that never panics: when stdout is a closed pipe
/// (`etl schema prefect | head -1`) the rest of the output is dropped and
/// the command still ends with its own exit code.
macro_rules! out {
    () => { out!("") };
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        let _ = o.write_fmt(format_args!($($t)*)).and_then(|_| o.write_all(b"\n"));
    }};
}

/// `eprintln!` that never panics on a closed stderr.
macro_rules! err_out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($t)*);
    }};
}
use etl::config::ConfigReader;
use etl::playground::{Playground, PlaygroundOptions};
use etl::{Error, SyncOptions};

#[path = "cli/admin.rs"]
mod admin;
#[path = "cli/flags.rs"]
mod flags;
#[path = "cli/lake.rs"]
mod lake;
#[path = "cli/report.rs"]
mod report;

use admin::{reset, schema, show_state};
use report::report;

#[derive(Parser)]
#[command(
    name = "etl",
    version,
    about = "Pull SaaS APIs into a local DuckDB file, a Parquet dataset or Delta Lake tables, merged by primary key, incrementally."
)]
#[command(
    long_about = "Pull SaaS APIs into a local DuckDB file, a hive-partitioned Parquet dataset \
or Delta Lake tables (a directory or s3://), merged by primary key, incrementally.\n\n\
Data and sync state are committed together, so a sync stopped at any instant \
resumes exactly where the last commit left off when you run the same command again.\n\n\
Try it without an account:\n  etl sync userflow --playground --out warehouse.duckdb\n  \
etl sync userflow --playground --out lake/ --format parquet\n  \
etl sync prefect --playground --out delta/ --format delta"
)]
struct Cli {
    /// More logging (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Log lines on stderr as text, or one JSON object per line (for log
    /// collectors: timestamp, level, message and fields).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        value_name = "FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the sync variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Sync a connector into a DuckDB file, a Parquet dataset or a Delta lake.
    Sync(SyncArgs),
    /// List the connectors this build knows.
    Connectors,
    /// Print a connector's tables: columns, types, primary keys.
    Schema {
        /// Connector name (see `etl connectors`).
        connector: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// The API spec whose tables to show (for `etl schema rest`).
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// The names to show: as they land with `--naming fivetran` (the default) or `source`.
        #[arg(long, value_enum, value_name = "NAMING", default_value = "fivetran")]
        naming: NamingArg,
    },
    /// Check a configuration: validate it, then make one authenticated request
    /// per table and read it like a first page; nothing is written. Exit 0 when
    /// every table answered, 1 when one did not, 2 for a bad configuration.
    Check {
        /// Connector name (see `etl connectors`).
        connector: String,
        /// The connector's configuration file.
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// The API spec of the `rest` connector.
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// Check against the built-in playground instead.
        #[arg(long, conflicts_with = "config")]
        playground: bool,
    },
    /// Show the progress a connector committed to a destination, per table.
    State {
        /// Connector name (see `etl connectors`).
        connector: String,
        /// The DuckDB file, Parquet dataset or Delta lake.
        #[arg(long, short = 'o', value_name = "PATH")]
        out: PathBuf,
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FormatArg>,
        /// Print the saved state as JSON.
        #[arg(long)]
        json: bool,
        /// The schema the connector's tables are in (default: the connector's
        /// name; for `rest`, the spec's name, so give it here).
        #[arg(long, value_name = "NAME")]
        schema: Option<String>,
    },
    /// Forget a connector's progress (one table's with --table) so the next
    /// sync reads it again from the start, in one commit; rows stay unless --drop.
    Reset {
        /// Connector name (see `etl connectors`).
        connector: String,
        /// The DuckDB file, Parquet dataset or Delta lake.
        #[arg(long, short = 'o', value_name = "PATH")]
        out: PathBuf,
        #[arg(long, value_enum, value_name = "FORMAT")]
        format: Option<FormatArg>,
        /// Only this table (default: every table of the connector).
        #[arg(long, value_name = "TABLE")]
        table: Option<String>,
        /// Also drop the table(s) and their rows.
        #[arg(long)]
        drop: bool,
        /// The schema the connector's tables are in (default: the connector's
        /// name; for `rest`, the spec's name, so give it here).
        #[arg(long, value_name = "NAME")]
        schema: Option<String>,
    },
    /// Delete the files of a Delta lake's tables that no current snapshot
    /// needs (replaced by later commits, or left by interrupted ones), once
    /// older than the retention period.
    Vacuum(lake::VacuumArgs),
    /// Serve the mock APIs on 127.0.0.1 until interrupted.
    Playground(PlaygroundArgs),
}

/// Run `f` (destination I/O with its own runtime) off the async workers.
async fn blocking(f: impl FnOnce() -> Result<(), Error> + Send + 'static) -> Result<(), Error> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::Internal(format!("the command panicked: {e}"))))
}

#[derive(Args)]
pub(crate) struct SyncArgs {
    /// Connector name (see `etl connectors`).
    connector: String,
    /// The connector's configuration file (the Connector SDK's configuration.json format).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// The API spec of the `rest` connector (TOML or JSON; see data/specs/).
    /// Its ${name} variables come from --config, ${env:NAME} from the environment.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// Sync from the built-in playground (a local mock of the API) instead of the real service.
    #[arg(long, conflicts_with = "config")]
    playground: bool,
    /// Users the playground generates (with --playground; default 10,000
    /// for Userflow, 1,000 for Egnyte, whose mock keeps Egnyte's 2 calls/s).
    #[arg(long, requires = "playground", value_name = "N")]
    playground_users: Option<usize>,
    /// Prefect flow runs the playground generates (with --playground).
    /// (default 2,000)
    #[arg(long, requires = "playground", value_name = "N")]
    playground_flow_runs: Option<usize>,
    /// Where to write: a DuckDB file (`warehouse.duckdb`), a Parquet dataset
    /// directory (`lake/`), or a Delta lake (a directory, `s3://bucket/prefix`
    /// with the AWS_* environment). Created if missing.
    #[arg(long, short = 'o', value_name = "PATH")]
    out: PathBuf,
    /// Output format; by default a path ending in .duckdb (or .db) is DuckDB, s3:// or a
    /// directory holding a Delta lake is Delta, anything else Parquet.
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<FormatArg>,
    /// The schema the connector's tables, state and _etl_* tables land in: a DuckDB
    /// schema, or the directory <out>/NAME/ of a Parquet lake (default: the connector's
    /// name; for `rest`, the spec's name). Connectors may share one as long as their
    /// tables differ.
    #[arg(long, value_name = "NAME")]
    schema: Option<String>,
    /// Sync only these tables (comma-separated; as they land or as the
    /// connector names them): several processes can sync different tables
    /// of one connector into one Delta lake at a time. Default: all.
    #[arg(long, value_name = "TABLE,...", value_delimiter = ',')]
    tables: Option<Vec<String>>,
    /// How tables and columns are named: `fivetran` (Fivetran's rules, as the Connector
    /// SDK's tester names them: createdAt → created_at, system columns _fivetran_synced,
    /// _fivetran_deleted, _fivetran_id) or `source` (the source's names, _synced_at,
    /// _etl_deleted, _etl_id). Default: the naming the schema was written with, else fivetran.
    #[arg(long, value_enum, value_name = "NAMING")]
    naming: Option<NamingArg>,
    /// Parquet and Delta: partition TABLE by COLUMN (`users=created_at:day`; transforms day, month,
    /// year, or none for the value itself; `TABLE=none` turns partitioning off). Repeatable.
    #[arg(long, value_name = "TABLE=COLUMN[:TRANSFORM]", value_parser = etl::dest::parquet::parse_partition_override)]
    partition_by: Vec<(String, Option<etl::schema::Partitioning>)>,
    /// Parquet and Delta: compression codec (zstd, zstd:LEVEL, snappy, none; default zstd).
    #[arg(long, value_name = "CODEC", value_parser = etl::dest::parquet::parse_compression)]
    compression: Option<parquet::basic::Compression>,
    /// Parquet and Delta: start a new file once one reaches this many MiB (default 256).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_file_mib: Option<u64>,
    /// Ignore saved progress and sync everything again (rows are still merged by key).
    #[arg(long)]
    full_refresh: bool,
    /// Commit at the next page boundary once this many rows arrived since the last commit.
    #[arg(long, default_value_t = 100_000, value_name = "ROWS", value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_rows: u64,
    /// Commit at the next page boundary once this many seconds passed since the last commit.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    checkpoint_seconds: f64,
    /// DuckDB: memory for caching and merging, beyond which it spills to disk (default 128MB).
    #[arg(long, value_name = "SIZE", value_parser = memory_size)]
    memory_limit: Option<String>,
    /// DuckDB: the storage format of a new file (default v1.4.0, which DuckDB 1.4
    /// and every later client opens; v2.0.0 is the bundled DuckDB's own format,
    /// which only DuckDB 2.0 and later read). An existing file keeps its format.
    #[arg(long, value_name = "VERSION",
          value_parser = clap::builder::PossibleValuesParser::new(etl::dest::duckdb::STORAGE_VERSIONS))]
    duckdb_storage_version: Option<String>,
    /// Refuse to soft-delete more than this share (0 to 1) of a table's live rows
    /// as "no longer in the source" after one scan, unless the source's own total
    /// agrees: the rows read are committed and the sync exits 1. 1 turns the guard off.
    #[arg(long, default_value_t = 0.5, value_name = "FRACTION", value_parser = fraction)]
    max_delete_fraction: f64,
    /// The end-of-sync summary on stdout: text, or one JSON object printed for
    /// every outcome, failures included (status, exit_code, error, per-table
    /// counts committed, rows read, pages, requests, retries, bytes, commits,
    /// the last commit's time and state, seconds, when a quota resets).
    #[arg(long, value_enum, default_value = "text", value_name = "FORMAT")]
    summary: SummaryFormat,
    /// Off a terminal, log a progress line (rows per table, pages, requests,
    /// retries, rate) every this many seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    progress_seconds: f64,
    /// Stop a table's scan with an error after this many pages (the last resort
    /// against a source whose pagination never ends).
    #[arg(long, default_value_t = etl::source::paginate::DEFAULT_MAX_PAGES, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_pages: u64,
}

/// Clap parser for `--max-delete-fraction`.
fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err("expected a number from 0 to 1, such as 0.5".into()),
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum NamingArg {
    /// Fivetran's naming rules and _fivetran_* system columns.
    Fivetran,
    /// The source's names and etl's _etl_* system columns.
    Source,
}

impl From<NamingArg> for etl::naming::Naming {
    fn from(n: NamingArg) -> Self {
        match n {
            NamingArg::Fivetran => etl::naming::Naming::Fivetran,
            NamingArg::Source => etl::naming::Naming::Source,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// One DuckDB database file.
    Duckdb,
    /// A hive-partitioned Parquet dataset directory.
    Parquet,
    /// Delta Lake tables in a directory or at s3://bucket/prefix (several
    /// writers at a time; read by Spark, DuckDB, polars).
    Delta,
}

impl From<FormatArg> for etl::OutputFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Duckdb => etl::OutputFormat::DuckDb,
            FormatArg::Parquet => etl::OutputFormat::Parquet,
            FormatArg::Delta => etl::OutputFormat::Delta,
        }
    }
}

#[derive(Args)]
struct PlaygroundArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8765)]
    port: u16,
    /// Userflow users to generate.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Prefect flow runs to generate (with 40 flows and 25 deployments).
    #[arg(long, default_value_t = 2_000)]
    flow_runs: usize,
    /// Egnyte users to generate (with 25 groups, 400 notes, 60 bookmarks).
    #[arg(long, default_value_t = 1_000)]
    egnyte_users: usize,
    /// Egnyte calls per second per token before 403 ERR_403_DEVELOPER_OVER_QPS (0: no limit).
    #[arg(long, default_value_t = 2)]
    egnyte_qps: u32,
    /// Egnyte calls per token per day before 403 ERR_403_DEVELOPER_OVER_RATE (0: no limit).
    #[arg(long, default_value_t = 0)]
    egnyte_daily_quota: u64,
    /// Lifetime of Egnyte access tokens in seconds (0: they never expire, as Egnyte's).
    #[arg(long, default_value_t = 0)]
    egnyte_token_ttl: u64,
    /// Latency added to every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of requests (0..1) answered with 429 + Retry-After, 500 or 503.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Clap parser for `--memory-limit`.
fn memory_size(s: &str) -> Result<String, String> {
    if etl::dest::duckdb::is_memory_size(s) {
        Ok(s.trim().to_string())
    } else {
        Err("expected a size such as 512MB or 2GB".into())
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SummaryFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(verbose: u8, quiet: bool, format: LogFormat) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("warn,etl={level}")));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(etl::progress::LogWriter)
        .with_target(false);
    match format {
        LogFormat::Json => fmt.json().with_current_span(false).init(),
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
}

fn main() -> ExitCode {
    // `etl --version` also names the DuckDB it writes with.
    let version: &'static str = Box::leak(
        format!(
            "{} (bundled DuckDB {}; new DuckDB files in the {} storage format unless --duckdb-storage-version says otherwise)",
            env!("CARGO_PKG_VERSION"),
            etl::dest::duckdb::bundled_version(),
            etl::dest::duckdb::DEFAULT_STORAGE_VERSION
        )
        .into_boxed_str(),
    );
    let cli = match Cli::command()
        .version(version)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    init_logging(cli.verbose, cli.quiet, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            err_out!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command, cli.log_format, cli.quiet)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            err_out!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cmd: Command, log_format: LogFormat, quiet: bool) -> Result<(), Error> {
    match cmd {
        Command::Connectors => {
            for c in etl::connectors::registry() {
                out!("{:<12} {}", c.name, c.description);
            }
            Ok(())
        }
        Command::Schema {
            connector,
            spec,
            json,
            naming,
        } => schema(&connector, spec.as_deref(), naming.into(), json),
        Command::Playground(a) => playground(a).await,
        Command::State {
            connector,
            out,
            format,
            json,
            schema,
        } => blocking(move || show_state(&connector, &out, format, schema.as_deref(), json)).await,
        Command::Check {
            connector,
            config,
            spec,
            playground,
        } => check(&connector, config.as_ref(), spec.as_ref(), playground).await,
        Command::Reset {
            connector,
            out,
            format,
            table,
            drop,
            schema,
        } => {
            blocking(move || {
                reset(
                    &connector,
                    &out,
                    format,
                    schema.as_deref(),
                    table.as_deref(),
                    drop,
                )
            })
            .await
        }
        Command::Vacuum(a) => blocking(move || lake::vacuum(a)).await,
        Command::Sync(a) => {
            let started = std::time::Instant::now();
            let stats = Arc::new(etl::RunStats::default());
            let (format, connector, out) = (a.summary, a.connector.clone(), a.out.clone());
            // A live line on a terminal; otherwise a log line every few seconds.
            let live = std::io::IsTerminal::is_terminal(&std::io::stderr())
                && log_format == LogFormat::Text
                && !quiet;
            let progress = etl::progress::start(
                stats.clone(),
                started,
                live,
                Duration::from_secs_f64(a.progress_seconds.max(0.1)),
            );
            let outcome = sync(a, stats.clone()).await;
            drop(progress);
            report(format, started, &connector, &out, &stats, &outcome);
            outcome.map(|_| ())
        }
    }
}

async fn playground(a: PlaygroundArgs) -> Result<(), Error> {
    if !(0.0..=1.0).contains(&a.fault_rate) {
        return Err(Error::Usage(format!(
            "--fault-rate must be between 0 and 1, got {}",
            a.fault_rate
        )));
    }
    let opts = PlaygroundOptions {
        port: a.port,
        users: a.users,
        flow_runs: a.flow_runs,
        latency: Duration::from_millis(a.latency_ms),
        fault_rate: a.fault_rate,
        seed: a.seed,
        egnyte: etl::playground::egnyte::EgnyteOptions {
            users: a.egnyte_users,
            qps: (a.egnyte_qps > 0).then_some(a.egnyte_qps),
            daily_quota: (a.egnyte_daily_quota > 0).then_some(a.egnyte_daily_quota),
            token_ttl: (a.egnyte_token_ttl > 0).then(|| Duration::from_secs(a.egnyte_token_ttl)),
            ..Default::default()
        },
        ..Default::default()
    };
    let pg = Playground::start(opts)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on 127.0.0.1:{}: {e}", a.port)))?;
    out!("playground listening on {}", pg.url());
    out!("API key (Bearer): {}", pg.api_key());
    out!(
        "Userflow: {} users at {}/users",
        pg.userflow().len(),
        pg.url()
    );
    out!(
        "Prefect: {} flow runs at {}{}",
        pg.prefect().all("flow_runs").len(),
        pg.url(),
        etl::playground::prefect::PREFIX
    );
    out!(
        "Egnyte: {} users at {}/pubapi/v2/users ({} calls/s per token{})",
        pg.egnyte().users.lock().unwrap().len(),
        pg.url(),
        a.egnyte_qps,
        if a.egnyte_daily_quota > 0 {
            format!(", {} a day", a.egnyte_daily_quota)
        } else {
            String::new()
        }
    );
    out!(
        "Fivetran api playground: {} users at {}/pagination/offset (…/page_number, …/next_page_url, …/keyset, /incremental/…, /cursors/…, /auth/…), CSV at {}/export/csv, SDK example records at {}/sdk/…",
        pg.fivetran().users_snapshot().len(),
        pg.url(),
        pg.url(),
        pg.url()
    );
    for name in ["egnyte", "userflow", "prefect", "csv_export"] {
        let cfg = pg.config_for(name).expect("mocked");
        out!("configuration for `etl sync {name} --config FILE`:");
        out!("{}", serde_json::to_string_pretty(&cfg).expect("json"));
    }
    out!("configuration for `etl sync rest --spec data/specs/<spec>.toml --config FILE` (each spec takes the keys it names):");
    out!(
        "{}",
        serde_json::to_string_pretty(&pg.config_for("rest").expect("mocked")).expect("json")
    );
    out!("press Ctrl-C to stop");
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

/// The connector's configuration: the --config file, or a playground
/// started here (alive while the returned handle is); --spec for rest.
#[allow(clippy::too_many_arguments)]
async fn source_config(
    info_name: &str,
    command: &str,
    config: Option<&PathBuf>,
    playground_flag: bool,
    spec: Option<&PathBuf>,
    users: Option<usize>,
    flow_runs: Option<usize>,
) -> Result<(ConfigReader, Option<Playground>), Error> {
    let sample = etl::connectors::find(info_name).map_or("", |i| i.sample_config);
    let mut playground = None;
    if spec.is_some() != (info_name == "rest") {
        return Err(Error::Usage(if spec.is_some() {
            format!(
                "--spec is for `etl {command} rest`; {} is a built-in connector",
                info_name
            )
        } else {
            format!("`etl {command} rest` needs --spec FILE (an API spec; see data/specs/)")
        }));
    }
    let mut config = match (config, playground_flag) {
        (None, false) if spec.is_some() => ConfigReader::from_map(Default::default()),
        (Some(path), false) => ConfigReader::from_file(path)?,
        (None, true) => {
            let mut opts = PlaygroundOptions {
                users: users.unwrap_or(10_000),
                flow_runs: flow_runs.unwrap_or(2_000),
                ..Default::default()
            };
            if let Some(n) = users {
                opts.egnyte.users = n;
            }
            let pg = Playground::start(opts)
                .await
                .map_err(|e| Error::Internal(format!("cannot start the playground: {e}")))?;
            tracing::info!(url = %pg.url(), "started the playground");
            let cfg = pg.config_for(info_name).ok_or_else(|| {
                Error::Usage(format!("connector {} has no playground yet", info_name))
            })?;
            playground = Some(pg);
            ConfigReader::from_map(cfg.as_object().expect("object").clone())
        }
        (None, false) => {
            return Err(Error::Usage(format!(
                "say where to {command} from: --config FILE (a JSON configuration such as\n{}\n) or --playground to try the built-in mock",
                sample
            )))
        }
        (Some(_), true) => unreachable!("clap rejects --config with --playground"),
    };
    if let Some(spec) = &spec {
        config.insert(
            "spec",
            serde_json::Value::String(spec.display().to_string()),
        );
    }
    Ok((config, playground))
}

async fn check(
    connector: &str,
    config: Option<&PathBuf>,
    spec: Option<&PathBuf>,
    playground: bool,
) -> Result<(), Error> {
    let info = etl::connectors::find(connector).ok_or_else(|| etl::unknown_connector(connector))?;
    let (config, _playground) = source_config(
        info.name,
        "check",
        config,
        playground,
        spec,
        Some(50),
        Some(50),
    )
    .await?;
    let conn = (info.build)(config, Default::default())?;
    let checks = conn.check().await;
    let mut failed = Vec::new();
    for c in &checks {
        match &c.outcome {
            Ok(what) => out!("ok      {:<20} {what} ({})", c.table, c.request),
            Err(e) => {
                out!("FAILED  {:<20} {e}", c.table);
                failed.push(c.table.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Error::source(
            format!("etl check {connector}"),
            format!(
                "{} of {} tables failed: {}",
                failed.len(),
                checks.len(),
                failed.join(", ")
            ),
        ))
    }
}

async fn sync(a: SyncArgs, stats: Arc<etl::RunStats>) -> Result<etl::SyncSummary, Error> {
    if !(a.checkpoint_seconds.is_finite() && a.checkpoint_seconds >= 0.0) {
        return Err(Error::Usage(format!(
            "--checkpoint-seconds must be a non-negative number, got {}",
            a.checkpoint_seconds
        )));
    }
    let info =
        etl::connectors::find(&a.connector).ok_or_else(|| etl::unknown_connector(&a.connector))?;
    flags::check_flags_apply(&a, info.name)?;
    let max_file_mib = a.max_file_mib.unwrap_or(256);
    let (config, _playground) = source_config(
        info.name,
        "sync",
        a.config.as_ref(),
        a.playground,
        a.spec.as_ref(),
        a.playground_users,
        a.playground_flow_runs,
    )
    .await?;
    let opts = SyncOptions {
        checkpoint_rows: a.checkpoint_rows,
        checkpoint_interval: Duration::from_secs_f64(a.checkpoint_seconds),
        full_refresh: a.full_refresh,
        memory_limit: Some(
            a.memory_limit
                .clone()
                .unwrap_or_else(|| etl::engine::DEFAULT_MEMORY_LIMIT.into()),
        ),
        duckdb_storage_version: a
            .duckdb_storage_version
            .clone()
            .unwrap_or_else(|| etl::dest::duckdb::DEFAULT_STORAGE_VERSION.into()),
        format: a.format.map(Into::into),
        parquet: etl::dest::parquet::ParquetOptions {
            compression: a.compression.unwrap_or(parquet::basic::Compression::ZSTD(
                parquet::basic::ZstdLevel::default(),
            )),
            file_bytes: (max_file_mib as usize) << 20,
            row_group_bytes: ((max_file_mib as usize) << 20).min(64 << 20),
            partition_overrides: a.partition_by.iter().cloned().collect(),
        },
        max_pages: a.max_pages,
        tables: a.tables.clone(),
        max_delete_fraction: a.max_delete_fraction,
        schema: a.schema.clone(),
        naming: a.naming.map(Into::into),
        ..Default::default()
    };
    let work = etl::sync_with(&a.connector, config, &a.out, opts, stats);
    tokio::select! {
        r = work => r,
        signal = interrupted() => {
            // The sync future is dropped: its writer rolls back to the last
            // commit in the background. Wait for that before exiting.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while etl::engine::active_writers() > 0 && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(Error::Interrupted { signal })
        }
    }
}

/// The first SIGINT (Ctrl-C) or SIGTERM, by name.
async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}
