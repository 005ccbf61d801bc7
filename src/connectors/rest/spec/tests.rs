use super::*;

fn check(toml_text: &str) -> Result<Spec> {
    let t: toml::Value = toml::from_str(toml_text).unwrap();
    let mut v = serde_json::to_value(t).unwrap();
    let mut vars = Map::new();
    vars.insert("token".into(), Value::String("s3cr3t-token".into()));
    parse(Path::new("api.toml"), &mut v, &vars, None)
}

const GOOD: &str = r#"
base_url = "http://127.0.0.1:5001"
[auth]
type = "bearer"
token = "${token}"
[[tables]]
name = "user"
path = "/pagination/offset"
records = "data"
primary_key = "id"
columns = { id = "STRING", updatedAt = "UTC_DATETIME", amount = { type = "DECIMAL", precision = 15, scale = 2 } }
incremental = { cursor_field = "updatedAt", param = "updated_since", ascending = true }
paginator = { type = "offset", limit = 50, total_field = "total" }
"#;

const WINDOWS: &str = r#"
base_url = "http://127.0.0.1:5001"
[[tables]]
name = "event"
path = "/events"
windows = { start_param = "from", end_param = "to", window_hours = 24, backfill_days = 5 }
"#;

#[test]
fn dotted_column_names_are_paths_into_nested_objects() {
    let s = check(&WINDOWS.replace(
        "windows = {",
        "primary_key = \"user.id\"\ncolumns = { \"user.login\" = \"STRING\", \"a.b.c\" = \"LONG\" }\nwindows = {",
    ))
    .unwrap();
    let t = &s.tables[0];
    assert_eq!(t.primary_key, vec!["user_id".to_string()]);
    let col = |n: &str| t.columns.iter().find(|c| c.name == n).cloned().unwrap();
    let path = |n: &str| match col(n).source {
        crate::schema::ColumnSource::Path(p) => p.join("/"),
        other => panic!("{other:?}"),
    };
    assert_eq!(path("user_login"), "user/login");
    assert_eq!(path("a_b_c"), "a/b/c");
    assert_eq!(path("user_id"), "user/id");
    assert_eq!(col("a_b_c").ty, ColumnType::Long);
    let e = check(&WINDOWS.replace(
        "windows = {",
        "columns = { \"user.\" = \"STRING\" }\nwindows = {",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("a dotted name needs a field on each side"),
        "{e}"
    );
}

#[test]
fn windows_read_with_their_defaults() {
    let s = check(WINDOWS).unwrap();
    let w = s.tables[0].windows.as_ref().unwrap();
    assert_eq!(
        (w.size, &w.backfill, w.backfill_windows_per_sync),
        (Duration::from_secs(86_400), &Backfill::Days(5), None)
    );
    assert_eq!(
        w.format.write(1_700_000_000_123_456),
        "2023-11-14T22:13:20Z"
    );
    assert_eq!(TimeFormat::Unix.write(1_700_000_000_123_456), "1700000000");
    assert_eq!(
        TimeFormat::UnixMillis.write(1_700_000_000_123_456),
        "1700000000123"
    );
    let s = check(&WINDOWS.replace(
        "backfill_days = 5",
        "backfill_from = \"2024-01-31T00:00:00Z\"",
    ))
    .unwrap();
    assert_eq!(
        s.tables[0].windows.as_ref().unwrap().backfill,
        Backfill::From(1_706_659_200_000_000)
    );
}

#[test]
fn a_good_spec_reads_with_its_secret_substituted() {
    let s = check(GOOD).unwrap();
    assert!(matches!(&s.auth, AuthSpec::Bearer { token } if token.expose() == "s3cr3t-token"));
    assert!(s.secrets.iter().all(|x| x.expose() == "s3cr3t-token"));
    assert_eq!(s.tables[0].columns.len(), 3);
    assert!(matches!(
        s.tables[0].paginator,
        Paginator::Offset { limit: 50, .. }
    ));
}

#[test]
fn errors_name_the_key_path() {
    let cases = [
        (
            GOOD.replace("limit = 50", "limit = 0"),
            "tables[0].paginator.limit: must be a whole number in 1..=100000",
        ),
        (
            GOOD.replace("type = \"offset\"", "type = \"ofset\""),
            "tables[0].paginator.type: unknown paginator \"ofset\"",
        ),
        (
            GOOD.replace("records = \"data\"", "record = \"data\""),
            "tables[0].record: unknown key",
        ),
        (
            GOOD.replace("\"UTC_DATETIME\"", "\"DATETIME\""),
            "tables[0].columns.updatedAt:",
        ),
        (
            GOOD.replace("${token}", "${tokn}"),
            "auth.token: ${tokn} is not set",
        ),
        (
            GOOD.replace(
                "base_url = \"http://127.0.0.1:5001\"",
                "base_url = \"ftp://x\"",
            ),
            "base_url: ftp://x",
        ),
        (
            GOOD.replace("name = \"user\"", "name = \"user\"\nmethod = \"PUT\""),
            "tables[0].method: must be one of \"GET\", \"POST\", got \"PUT\"",
        ),
        (
            GOOD.replace("precision = 15", "precision = 50"),
            "tables[0].columns.amount: DECIMAL needs precision",
        ),
        (
            GOOD.replace("name = \"user\"", "name = \"user\"\nparent = \"nope\""),
            "tables[0].parent: \"nope\" is not a table",
        ),
        (
            GOOD.replace("type = \"bearer\"", "type = \"digest\""),
            "auth.type: unknown auth \"digest\"",
        ),
        (
            format!("{GOOD}windows = {{ start_param = \"from\", end_param = \"to\", backfill_days = 5 }}\n"),
            "tables[0].windows: a table reads either by incremental cursor or by windows",
        ),
        (
            WINDOWS.replace("backfill_days = 5", ""),
            "tables[0].windows.backfill_days: is required (or backfill_from)",
        ),
        (
            WINDOWS.replace("backfill_days = 5", "backfill_from = \"last year\""),
            "tables[0].windows.backfill_from: \"last year\" is not a UTC time",
        ),
        (
            WINDOWS.replace("window_hours = 24", "window_hours = 0"),
            "tables[0].windows.window_hours: must be a whole number in 1..=",
        ),
        (
            GOOD.replace(
                "base_url = \"http://127.0.0.1:5001\"",
                "base_url = \"http://127.0.0.1:5001\"\nheaders = { X-Client = \"a\\nb\" }",
            ),
            "headers.X-Client: holds characters a header value cannot",
        ),
        (
            format!("{WINDOWS}[[tables]]\nname = \"detail\"\nparent = \"event\"\npath = \"/events/{{parent.id}}\"\n"),
            "tables[1].parent: \"event\" is read by windows",
        ),
        (
            GOOD.replace("records = \"data\"", "records = \"data\"\nconcurrency = 0"),
            "tables[0].concurrency: must be a whole number in 1..=64",
        ),
        (
            WINDOWS.replace("end_param = \"to\"", "end_param = \"from\""),
            "tables[0].windows.end_param: must differ from start_param",
        ),
        (
            WINDOWS.replace("window_hours = 24", "window_hours = 24, format = \"iso\""),
            "tables[0].windows.format: must be rfc3339, unix or unix_ms",
        ),
    ];
    for (text, want) in cases {
        let e = check(&text).unwrap_err().to_string();
        assert!(
            e.contains(want) && e.contains("api.toml"),
            "want {want:?} in {e}"
        );
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
