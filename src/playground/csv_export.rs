//! The CSV export endpoint of the Fivetran playground mock: the users as
//! a quoted CSV download (`/export/csv`), or `rows` generated rows streamed
//! in chunks (`/export/csv?rows=N`, for the memory benches).

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::fivetran::{ts, FivetranMock, FIRST, JOBS, LAST};
use super::wire::{MockRequest, Resp, SplitMix64};

/// RFC 4180: quoted when holding a comma, quote, CR or LF; quotes doubled.
fn csv_field(s: &str, out: &mut String) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

pub const CSV_HEADER: &str = "id,name,email,address,company,job,createdAt,updatedAt";

fn csv_row(u: &Value, out: &mut String) {
    for (i, k) in [
        "id",
        "name",
        "email",
        "address",
        "company",
        "job",
        "createdAt",
        "updatedAt",
    ]
    .iter()
    .enumerate()
    {
        if i > 0 {
            out.push(',');
        }
        csv_field(u[*k].as_str().unwrap_or(""), out);
    }
    out.push_str("\r\n");
}

pub(crate) fn export_csv(m: &FivetranMock, _req: &MockRequest) -> Resp {
    let mut out = String::from("\u{feff}");
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for u in m.users.lock().unwrap().iter() {
        csv_row(u, &mut out);
    }
    hyper::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/csv")
        .header(
            "content-disposition",
            "attachment; filename=data_export.csv",
        )
        .body(http_body_util::Full::new(Bytes::from(out)))
        .expect("valid response")
}

/// Row `i` of a generated export (same shape as the users; ~250 bytes).
fn generated_row(i: u64, out: &mut String) {
    let mut rng = SplitMix64(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let created = 1_700_000_000 + i as i64;
    let (f, l) = (FIRST[rng.below(8) as usize], LAST[rng.below(8) as usize]);
    let u = json!({
        "id": format!("u{i:012}"),
        "name": format!("{f} {l}"),
        "email": format!("{}.{}{i}@example.net", f.to_lowercase(), l.to_lowercase()),
        "address": format!("{} Main St\nSpringfield, IL {:05}", i % 10_000, rng.below(99_999)),
        "company": format!("{l}, {f} and Sons"),
        "job": JOBS[rng.below(5) as usize],
        "createdAt": ts(created),
        "updatedAt": ts(created + rng.below(3600) as i64),
    });
    csv_row(&u, out);
}

/// `/export/csv?rows=N`: N generated rows, streamed in ~256 KB chunks.
pub(crate) fn streamed_export(
    rows: u64,
) -> hyper::Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>> {
    use futures::StreamExt;
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    let head = format!("\u{feff}{CSV_HEADER}\r\n");
    let chunks = futures::stream::unfold(0u64, move |next| async move {
        if next >= rows {
            return None;
        }
        let mut out = String::with_capacity(300 * 1024);
        let mut i = next;
        while i < rows && out.len() < 256 * 1024 {
            generated_row(i, &mut out);
            i += 1;
        }
        Some((Bytes::from(out), i))
    });
    let body = futures::stream::once(async move { Bytes::from(head) })
        .chain(chunks)
        .map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
    hyper::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/csv")
        .body(BodyExt::boxed(StreamBody::new(body)))
        .expect("valid response")
}
