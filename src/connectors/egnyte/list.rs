//! Reading one Egnyte list: SCIM (`startIndex`, `resources`,
//! `totalResults`) or v1 (`offset`, `notes`/`bookmarks`, a total), pages
//! fetched ahead within the rate budget and handed over in order, each
//! group's detail call, and how Egnyte's refusals are explained.

use super::*;

/// A list page: its records' byte ranges and the total the server reported.
pub(super) struct Envelope {
    pub(super) ranges: Vec<std::ops::Range<usize>>,
    pub(super) total: Option<u64>,
}

pub(super) fn envelope(body: &[u8], paging: Paging) -> std::result::Result<Envelope, String> {
    #[derive(Deserialize)]
    struct Scim<'a> {
        #[serde(rename = "totalResults")]
        total: Option<u64>,
        #[serde(borrow)]
        resources: Option<Vec<&'a RawValue>>,
        #[serde(borrow, rename = "Resources")]
        resources_upper: Option<Vec<&'a RawValue>>,
    }
    #[derive(Deserialize)]
    struct V1<'a> {
        #[serde(borrow)]
        notes: Option<Vec<&'a RawValue>>,
        #[serde(borrow)]
        bookmarks: Option<Vec<&'a RawValue>>,
        total_results: Option<u64>,
        total_count: Option<u64>,
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("page is not UTF-8: {e}"))?;
    let (list, total) = match paging {
        Paging::Scim => {
            expect_object(text, "\"resources\" and \"totalResults\"")?;
            let p: Scim = serde_json::from_str(text)
                .map_err(|e| format!("expected a SCIM list response: {e}"))?;
            // SCIM may leave the list out only when it is empty (RFC 7644 §3.4.2).
            let list = match (p.resources.or(p.resources_upper), p.total) {
                (Some(l), _) => l,
                (None, Some(0)) => Vec::new(),
                (None, _) => {
                    return Err(
                        "expected a SCIM list response with \"resources\" and \"totalResults\""
                            .into(),
                    )
                }
            };
            (list, p.total)
        }
        Paging::Offset { key } => {
            expect_object(text, &format!("a {key:?} list"))?;
            let p: V1 = serde_json::from_str(text)
                .map_err(|e| format!("expected an object with a {key:?} list: {e}"))?;
            let list = if key == "notes" { p.notes } else { p.bookmarks };
            let list = list.ok_or_else(|| format!("response has no {key:?} list"))?;
            (list, p.total_results.or(p.total_count))
        }
    };
    Ok(Envelope {
        ranges: list.iter().map(|v| range_in(body, v)).collect(),
        total,
    })
}

/// A fetched and decoded page.
pub(super) struct Fetched {
    pub(super) records: u64,
    pub(super) total: Option<u64>,
    pub(super) decoded: Decoded,
}

/// Where a full scan of a list stands: the position of the next page.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Position {
    pub(super) position: u64,
}

/// A finished scan.
pub(super) struct Scan {
    /// It reached the end and the list's total never changed during it.
    pub(super) complete_and_stable: bool,
    pub(super) pages: u64,
    /// The list's total as the server reported it (SCIM `totalResults`).
    pub(super) total: Option<u64>,
}

/// One scan of a list, page by page in order ([`Egnyte::list`]).
pub(super) struct ListScan<'a> {
    pub(super) egnyte: &'a Egnyte,
    pub(super) ctx: &'a SyncContext,
    pub(super) s: &'a Stream,
    pub(super) query: Vec<(&'static str, String)>,
    pub(super) size: u64,
    pub(super) pages: OffsetPages<std::result::Result<Fetched, Error>>,
    pub(super) first_total: Option<u64>,
    pub(super) stable: bool,
    pub(super) read: u64,
    pub(super) saved_token: Option<String>,
}

impl ListScan<'_> {
    /// The next page's rows and the position after them; `None` at the end.
    pub(super) async fn next(&mut self) -> Result<Option<(RecordBatch, u64)>> {
        // A refresh token rotated while the last page was read is kept first.
        let (egnyte, ctx, s) = (self.egnyte, self.ctx, self.s);
        egnyte
            .save_rotated_token(ctx, &mut self.saved_token)
            .await?;
        let (query, size) = (&self.query, self.size);
        let launch = |pos: u64| -> BoxFuture<'static, std::result::Result<Fetched, Error>> {
            let (first, count) = match s.paging {
                Paging::Scim => ("startIndex", pos + 1),
                Paging::Offset { .. } => ("offset", pos),
            };
            let mut q: Vec<(&str, String)> = query.clone();
            q.push((first, count.to_string()));
            q.push(("count", size.to_string()));
            Box::pin(egnyte.fetch(s, egnyte.url(s.path, &q), pos))
        };
        let Some(next) = self.pages.next(launch).await else {
            return Ok(None);
        };
        let (pos, page) = next.map_err(|m| Error::source(format!("Egnyte {}", s.name()), m))?;
        let page = page?;
        ctx.emit.page_fetched();
        self.read += 1;
        if let Some(t) = page.total {
            match self.first_total {
                None => self.first_total = Some(t),
                Some(f) if f != t => self.stable = false,
                _ => {}
            }
            self.pages.raise_bound(t);
            ctx.emit.stats.scanned(s.name(), pos + page.records, t);
        }
        let end = match (s.paging, page.total) {
            // An empty page ends the list only where the total agrees.
            (_, Some(t)) if page.records == 0 && pos < t => {
                return Err(Error::source(
                    format!("Egnyte {} at position {}", s.name(), pos + 1),
                    crate::source::paginate::empty_but_more(&format!("the list holds {t}")),
                ))
            }
            (_, _) if page.records == 0 => true,
            (Paging::Scim, Some(t)) => pos + page.records >= t,
            _ => page.records < size,
        };
        if egnyte.cfg.debug_logging {
            tracing::info!(stream = s.name(), position = pos, records = page.records, total = ?page.total, "page");
        } else {
            tracing::trace!(
                stream = s.name(),
                position = pos,
                records = page.records,
                "page"
            );
        }
        if end {
            self.pages.stop();
        }
        ctx.emit.reject(page.decoded.rejects).await?;
        Ok(Some((page.decoded.batch, pos + page.records)))
    }

    /// What the finished scan proved.
    pub(super) fn outcome(&self) -> Scan {
        Scan {
            complete_and_stable: self.stable,
            pages: self.read,
            total: self.first_total,
        }
    }
}

/// Maps HTTP failures inside page tasks (which do not hold the connector).
#[derive(Clone, Copy)]
pub(super) struct Explainer {
    pub(super) oauth: bool,
}

impl Explainer {
    pub(super) fn explain(&self, e: HttpError) -> Error {
        if e.quota_resets_in().is_none() && e.status() == Some(401) {
            return Error::source(
                format!("Egnyte {}", e.url),
                format!(
                    "the access token was refused ({}); check api_token{}",
                    e.kind_text(),
                    if self.oauth {
                        " and refresh_token (a refresh was tried)"
                    } else {
                        ", or configure refresh_token, client_id and client_secret to renew it"
                    }
                ),
            );
        }
        e.into()
    }
}

/// The detail of every group on a list page, as a JSON array of
/// `{"group": <detail>, "member_count": n}` (details kept byte for byte).
pub(super) async fn group_details(
    http: &HttpClient,
    base: &Url,
    body: &[u8],
    ranges: &[std::ops::Range<usize>],
    explain: &Explainer,
) -> std::result::Result<Vec<u8>, Error> {
    #[derive(Deserialize)]
    struct Item {
        id: Value,
    }
    #[derive(Deserialize)]
    struct Detail {
        #[serde(default)]
        members: Option<Vec<serde::de::IgnoredAny>>,
    }
    let ids: Vec<String> = ranges
        .iter()
        .filter_map(|r| serde_json::from_slice::<Item>(&body[r.clone()]).ok())
        .map(|i| match i.id {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect();
    let details = futures::future::try_join_all(ids.iter().map(|id| {
        let mut url = base.join("/pubapi/v2/groups/").expect("valid URL");
        url.path_segments_mut()
            .expect("base URL")
            .pop_if_empty()
            .push(id);
        http.send(Request::get(url))
    }))
    .await
    .map_err(|e| explain.explain(e))?;
    let mut out = Vec::with_capacity(details.iter().map(|d| d.body.len() + 32).sum());
    out.push(b'[');
    for (i, d) in details.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Spliced into the page as it is: it must be one JSON object.
        let detail = std::str::from_utf8(&d.body)
            .map_err(|e| e.to_string())
            .and_then(|t| expect_object(t, "the group's \"id\" and \"members\"").map(|()| t))
            .and_then(|t| serde_json::from_str::<Detail>(t).map_err(|e| e.to_string()))
            .map_err(|m| Error::source(format!("Egnyte group {}", d.url), m))?;
        let n = detail.members.map_or(0, |m| m.len());
        out.extend_from_slice(b"{\"group\":");
        out.extend_from_slice(d.body.trim_ascii());
        out.extend_from_slice(format!(",\"member_count\":{n}}}").as_bytes());
    }
    out.push(b']');
    Ok(out)
}

impl Egnyte {
    /// Read `s` from `start` (0-based position) with `query`, up to
    /// `concurrency` pages in flight within the budget.
    pub(super) fn list<'a>(
        &'a self,
        ctx: &'a SyncContext,
        s: &'a Stream,
        start: u64,
        query: Vec<(&'static str, String)>,
    ) -> ListScan<'a> {
        let size = s.page_size as u64;
        ListScan {
            egnyte: self,
            ctx,
            s,
            query,
            size,
            pages: OffsetPages::new(start, size, self.cfg.concurrency, ctx.max_pages),
            first_total: None,
            stable: true,
            read: 0,
            saved_token: None,
        }
    }

    /// One page: fetched (and for groups, each group's detail), decoded.
    pub(super) fn fetch(
        &self,
        s: &Stream,
        url: Url,
        pos: u64,
    ) -> impl std::future::Future<Output = std::result::Result<Fetched, Error>> + Send + 'static
    {
        let http = self.http.clone();
        let decoder = s.decoder.clone();
        let paging = s.paging;
        let groups = s.name() == "groups";
        let base = self.cfg.base.clone();
        let this_explain = Explainer {
            oauth: self.oauth.is_some(),
        };
        async move {
            {
                let resp = http
                    .send(Request::get(url.clone()))
                    .await
                    .map_err(|e| this_explain.explain(e))?;
                let location = url.to_string();
                let env = envelope(&resp.body, paging)
                    .map_err(|m| Error::source(format!("Egnyte {location}"), m))?;
                let records = env.ranges.len() as u64;
                let (body, ranges) = if groups {
                    let details =
                        group_details(&http, &base, &resp.body, &env.ranges, &this_explain).await?;
                    let page = bytes::Bytes::from(details);
                    let ranges = crate::decode::split_array(&page, None)
                        .map_err(|m| Error::source(format!("Egnyte {location}"), m))?;
                    (page, ranges)
                } else {
                    (resp.body, env.ranges)
                };
                let pctx = PageContext {
                    first_row: pos,
                    location,
                    synced_at_micros: now_micros(),
                };
                let decoded = spawn_decode(decoder, body, ranges, pctx).await?;
                Ok(Fetched {
                    records,
                    total: env.total,
                    decoded,
                })
            }
        }
    }
}
