//! Paginators: first request → page → next request, or done.
//!
//! A [`Paginator`] does no I/O. The scan asks it to [`start`](Paginator::start)
//! a URL, fetches that, shows it the page ([`PageView`]: the request, the
//! headers, the envelope fields and how many records came), and asks for
//! the [`next`](Paginator::next) request until `None`. Where the first page
//! tells how many pages there are, [`remaining`](Paginator::remaining)
//! lists them so they can be fetched concurrently (see
//! [`super::fetch`]). Each kind is one small struct: adding a paginator
//! is one `impl` here plus its tests.
//!
//! Pagination always terminates: a [`ScanGuard`] refuses a request already
//! made in the same scan (a next URL or cursor pointing back) and a scan
//! past its page limit, and a page that is empty while it says more follow
//! is an error, never the end of a complete scan.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

use crate::decode::envelope::Envelope;
use crate::http::Response;

/// Pages one scan of one table may take before it is stopped as runaway
/// (`--max-pages`); far above any real list at any page size.
pub const DEFAULT_MAX_PAGES: u64 = 1_000_000;

/// What a paginator sees of one page.
pub struct PageView<'a> {
    /// The request that was made.
    pub url: &'a Url,
    /// The URL that answered (after redirects): relative links join onto it.
    pub response_url: &'a Url,
    pub headers: &'a HeaderMap,
    /// Every field of the answer but the records (`Null` when the body is the list).
    pub envelope: &'a Value,
    /// Records on the page.
    pub records: u64,
    /// The last record's JSON text (cursor-by-id paginators read its id).
    pub last_record: Option<&'a str>,
    /// The largest incremental cursor value on the page.
    pub max_cursor: Option<&'a str>,
}

impl<'a> PageView<'a> {
    /// What `resp` (asked for at `url`, split into `page`) shows a paginator.
    pub fn of(url: &'a Url, resp: &'a Response, page: &'a Envelope) -> Self {
        let last = page.ranges.last().and_then(|r| resp.body.get(r.clone()));
        PageView {
            url,
            response_url: &resp.url,
            headers: &resp.headers,
            envelope: &page.fields,
            records: page.ranges.len() as u64,
            last_record: last.and_then(|b| std::str::from_utf8(b).ok()),
            max_cursor: None,
        }
    }

    /// The envelope field at `path`.
    pub fn field(&self, path: &[String]) -> Option<&Value> {
        path.iter().try_fold(self.envelope, |cur, k| cur.get(k))
    }

    /// A number at `path` (a JSON number or a numeric string).
    pub fn number(&self, path: &[String]) -> Option<u64> {
        self.field(path)
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
    }

    /// Non-empty text at `path` (a string, or a number's text).
    pub fn text(&self, path: &[String]) -> Option<String> {
        match self.field(path)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
        .filter(|s| !s.is_empty())
    }
}

/// One kind of pagination. `next` errors (a message; the scan adds the URL)
/// when the page contradicts itself, such as an empty page that says more
/// follow.
pub trait Paginator: Send {
    /// The first request: `url` with the paginator's parameters set.
    fn start(&mut self, url: Url) -> Url;

    /// The request after `page`, or `None` when the list is complete.
    fn next(&mut self, page: &PageView) -> Result<Option<Url>, String>;

    /// How many records the whole scan holds, when the page says (progress).
    fn total_records(&self, _page: &PageView) -> Option<u64> {
        None
    }

    /// Every request after the first, when the first page tells how many
    /// there are; they do not depend on each other and may be fetched
    /// concurrently. Called after `next` saw the first page.
    fn remaining(&self, _page: &PageView) -> Option<Vec<Url>> {
        None
    }

    /// Where a resumable scan stands (saved with each page), if it resumes by number.
    fn position(&self) -> Option<u64> {
        None
    }

    /// Where a resumable scan stands, if it resumes after a record's id.
    fn cursor(&self) -> Option<&str> {
        None
    }
}

/// `url` with `k` set to `v` (replacing it if present).
pub fn with_param(url: &Url, k: &str, v: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(pk, _)| pk != k)
        .map(|(a, b)| (a.into_owned(), b.into_owned()))
        .collect();
    let mut u = url.clone();
    {
        let mut q = u.query_pairs_mut();
        q.clear();
        for (a, b) in &pairs {
            q.append_pair(a, b);
        }
        q.append_pair(k, v);
    }
    u
}

/// `first` with its query replaced by `param=token` alone (a scroll request).
fn token_only(first: &Url, param: &str, token: &str) -> Url {
    let mut u = first.clone();
    u.set_query(None);
    u.query_pairs_mut().append_pair(param, token);
    u
}

/// The `rel="next"` target of a `Link` header.
pub fn link_next(headers: &HeaderMap) -> Option<String> {
    for h in headers.get_all(reqwest::header::LINK) {
        let Ok(h) = h.to_str() else { continue };
        for part in h.split(',') {
            let mut bits = part.split(';');
            let target = bits.next()?.trim();
            if bits.any(|b| {
                let b = b.trim().replace(' ', "");
                b == "rel=\"next\"" || b == "rel=next"
            }) {
                return Some(
                    target
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string(),
                );
            }
        }
    }
    None
}

/// The error for a page with no records that says more follow.
pub fn empty_but_more(signal: &str) -> String {
    format!(
        "the page is empty but says {signal}; the scan cannot be complete, so it stops here \
         and nothing is soft-deleted"
    )
}

/// A single request: the list is one page.
pub struct Single;

impl Paginator for Single {
    fn start(&mut self, url: Url) -> Url {
        url
    }
    fn next(&mut self, _: &PageView) -> Result<Option<Url>, String> {
        Ok(None)
    }
}

/// `offset`/`limit` parameters; ends at the total the page gives, else at a short page.
pub struct Offset {
    pub offset_param: String,
    pub limit_param: String,
    pub limit: u64,
    pub total_field: Option<Vec<String>>,
    /// The next request's offset.
    pub position: u64,
}

impl Paginator for Offset {
    fn start(&mut self, url: Url) -> Url {
        let u = with_param(&url, &self.limit_param, &self.limit.to_string());
        with_param(&u, &self.offset_param, &self.position.to_string())
    }

    fn next(&mut self, page: &PageView) -> Result<Option<Url>, String> {
        let n = page.records;
        let more = match self.total_field.as_ref().and_then(|p| page.number(p)) {
            Some(total) if n == 0 && self.position < total => {
                return Err(empty_but_more(&format!(
                    "a total of {total} at offset {}",
                    self.position
                )))
            }
            Some(total) => self.position + n < total,
            None => n >= self.limit,
        };
        self.position += n;
        Ok(more.then(|| with_param(page.url, &self.offset_param, &self.position.to_string())))
    }

    fn total_records(&self, page: &PageView) -> Option<u64> {
        page.number(self.total_field.as_ref()?)
    }

    fn remaining(&self, page: &PageView) -> Option<Vec<Url>> {
        let total = page.number(self.total_field.as_ref()?)?;
        // Steps of what the server sent (it may cap the limit asked for).
        let step = page.records.max(1) as usize;
        (page.records > 0).then(|| {
            (self.position..total)
                .step_by(step)
                .map(|o| with_param(page.url, &self.offset_param, &o.to_string()))
                .collect()
        })
    }
}

/// Page numbers from `start`; ends at the page count the page gives, else at a short or empty page.
pub struct PageNumber {
    pub page_param: String,
    pub size_param: Option<String>,
    pub size: Option<u64>,
    pub start: u64,
    pub total_pages_field: Option<Vec<String>>,
    /// The next request's page number.
    pub position: u64,
}

impl Paginator for PageNumber {
    fn start(&mut self, url: Url) -> Url {
        let mut u = url;
        if let (Some(p), Some(s)) = (&self.size_param, self.size) {
            u = with_param(&u, p, &s.to_string());
        }
        self.position = self.start;
        with_param(&u, &self.page_param, &self.start.to_string())
    }

    fn next(&mut self, page: &PageView) -> Result<Option<Url>, String> {
        let n = page.records;
        let more = match self.total_pages_field.as_ref().and_then(|p| page.number(p)) {
            Some(total) if n == 0 && self.position < total => {
                return Err(empty_but_more(&format!(
                    "{total} pages in all at page {}",
                    self.position
                )))
            }
            Some(total) => self.position < total,
            None => n > 0 && self.size.is_none_or(|s| n >= s),
        };
        self.position += 1;
        Ok(more.then(|| with_param(page.url, &self.page_param, &self.position.to_string())))
    }

    fn remaining(&self, page: &PageView) -> Option<Vec<Url>> {
        let total = page.number(self.total_pages_field.as_ref()?)?;
        (page.records > 0).then(|| {
            (self.position..self.start + total)
                .map(|p| with_param(page.url, &self.page_param, &p.to_string()))
                .collect()
        })
    }
}

/// The next page's URL in a body field, or in the `Link: <…>; rel="next"` header.
pub struct NextUrl {
    /// `None`: the `Link` header.
    pub field: Option<Vec<String>>,
}

impl Paginator for NextUrl {
    fn start(&mut self, url: Url) -> Url {
        url
    }

    fn next(&mut self, page: &PageView) -> Result<Option<Url>, String> {
        let next = match &self.field {
            Some(f) => page.text(f),
            None => link_next(page.headers),
        };
        next.map(|u| {
            page.response_url
                .join(&u)
                .map_err(|e| format!("next page URL {u:?} is not a URL: {e}"))
        })
        .transpose()
    }
}

/// An opaque token from the body sent back as a parameter, while `has_more_field` (if any) says so.
pub struct Token {
    pub token_field: Vec<String>,
    pub param: String,
    pub has_more_field: Option<Vec<String>>,
}

impl Paginator for Token {
    fn start(&mut self, url: Url) -> Url {
        url
    }

    fn next(&mut self, page: &PageView) -> Result<Option<Url>, String> {
        let said = self
            .has_more_field
            .as_ref()
            .and_then(|p| page.field(p))
            .and_then(Value::as_bool);
        if said == Some(true) && page.records == 0 {
            return Err(empty_but_more("has_more: true"));
        }
        Ok(match page.text(&self.token_field) {
            Some(tok) if said.unwrap_or(true) && page.records > 0 => {
                Some(with_param(page.url, &self.param, &tok))
            }
            _ => None,
        })
    }
}

/// A scroll token: like [`Token`], but the first request's parameters are
/// sent only once. With `resume_param` (the incremental cursor's parameter)
/// the next page is asked for by the page's largest cursor value instead,
/// inclusively, for servers whose token skips records sharing the boundary.
pub struct Keyset {
    pub token_field: Vec<String>,
    pub param: String,
    pub resume_param: Option<String>,
    first: Option<Url>,
}

impl Keyset {
    pub fn new(token_field: Vec<String>, param: String, resume_param: Option<String>) -> Self {
        Keyset {
            token_field,
            param,
            resume_param,
            first: None,
        }
    }
}

impl Paginator for Keyset {
    fn start(&mut self, url: Url) -> Url {
        self.first = Some(url.clone());
        url
    }

    fn next(&mut self, page: &PageView) -> Result<Option<Url>, String> {
        let first = self.first.as_ref().unwrap_or(page.url);
        let Some(tok) = page.text(&self.token_field).filter(|_| page.records > 0) else {
            return Ok(None);
        };
        let Some(param) = &self.resume_param else {
            return Ok(Some(token_only(first, &self.param, &tok)));
        };
        let sent = page
            .url
            .query_pairs()
            .find(|(k, _)| k == param)
            .map(|(_, v)| v.into_owned());
        Ok(Some(match page.max_cursor {
            // Records sharing the page's last cursor value are read again rather than skipped.
            Some(c) if sent.as_deref() != Some(c) => with_param(first, param, c),
            _ => {
                tracing::warn!(url = %page.url, "a whole page shares one cursor value: following the scroll token");
                token_only(first, &self.param, &tok)
            }
        }))
    }
}

/// SCIM: `startIndex` from 1 and `count`, the total in `totalResults`.
pub struct Scim {
    pub start_param: String,
    pub count_param: String,
    pub count: u64,
    pub total_field: Vec<String>,
    /// The next request's start index.
    pub position: u64,
}

impl Paginator for Scim {
    fn start(&mut self, url: Url) -> Url {
        self.position = 1;
        let u = with_param(&url, &self.start_param, "1");
        with_param(&u, &self.count_param, &self.count.to_string())
    }

    fn next(&mut self, page: &PageView) -> Result<Option<Url>, String> {
        let n = page.records;
        let total = page.number(&self.total_field);
        if let Some(tot) = total.filter(|&tot| n == 0 && self.position <= tot) {
            return Err(empty_but_more(&format!(
                "totalResults {tot} at startIndex {}",
                self.position
            )));
        }
        self.position += n;
        let more = n > 0 && total.map_or(n >= self.count, |tot| self.position <= tot);
        Ok(more.then(|| with_param(page.url, &self.start_param, &self.position.to_string())))
    }

    fn total_records(&self, page: &PageView) -> Option<u64> {
        page.number(&self.total_field)
    }
}

/// Windows of ids, `step` wide (`start_param`..=`end_param`), until an
/// empty window. Resumable: [`position`](Paginator::position) is the next
/// window's start.
pub struct Step {
    pub start_param: String,
    pub end_param: String,
    pub step: u64,
    /// The next window's first id (the spec's start, or a saved position).
    pub position: u64,
}

impl Step {
    fn window(&self, url: &Url) -> Url {
        let u = with_param(url, &self.start_param, &self.position.to_string());
        with_param(
            &u,
            &self.end_param,
            &(self.position + self.step - 1).to_string(),
        )
    }
}

impl Paginator for Step {
    fn start(&mut self, url: Url) -> Url {
        self.window(&url)
    }

    fn next(&mut self, page: &PageView) -> Result<Option<Url>, String> {
        if page.records == 0 {
            return Ok(None);
        }
        self.position += self.step;
        Ok(Some(self.window(page.url)))
    }

    fn position(&self) -> Option<u64> {
        Some(self.position)
    }
}

/// Cursor pagination in the style of Stripe and Userflow: `limit` plus
/// `starting_after=<id of the last item>`, ending when `has_more` is false
/// (which the page must say). The server's `next_page_url` (relative or
/// absolute) is followed when given.
pub struct StartingAfter {
    pub limit: u32,
    /// The id the next page starts after (what state records).
    pub last_id: Option<String>,
    endpoint: Option<Url>,
}

impl StartingAfter {
    /// Start at the beginning, or after `resume_after` (an id from saved state).
    pub fn new(limit: u32, resume_after: Option<String>) -> Self {
        StartingAfter {
            limit,
            last_id: resume_after,
            endpoint: None,
        }
    }

    fn after(&self, id: Option<&str>) -> Url {
        let mut u = self.endpoint.clone().expect("started");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("limit", &self.limit.to_string());
            if let Some(id) = id {
                q.append_pair("starting_after", id);
            }
        }
        u
    }
}

impl Paginator for StartingAfter {
    fn start(&mut self, url: Url) -> Url {
        self.endpoint = Some(url);
        self.after(self.last_id.clone().as_deref())
    }

    fn next(&mut self, page: &PageView) -> Result<Option<Url>, String> {
        // A last record without a usable id is the decoder's to report (with
        // its row, or quarantined); the next page then follows next_page_url.
        #[derive(serde::Deserialize)]
        struct IdOnly {
            id: Option<Value>,
        }
        // Only the id is read; the record's other fields are skipped.
        let id =
            page.last_record
                .and_then(|raw| match serde_json::from_str::<IdOnly>(raw).ok()?.id? {
                    Value::String(s) => Some(s),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                });
        if id.is_some() {
            self.last_id = id;
        }
        let has_more = page
            .envelope
            .get("has_more")
            .and_then(Value::as_bool)
            .ok_or("the list object has no \"has_more\"")?;
        if !has_more {
            return Ok(None);
        }
        if page.records == 0 {
            return Err(empty_but_more("has_more: true"));
        }
        Ok(Some(match page.text(&["next_page_url".to_string()]) {
            Some(next) => self
                .endpoint
                .as_ref()
                .expect("started")
                .join(&next)
                .map_err(|e| format!("next_page_url {next:?} is not a URL: {e}"))?,
            None => self.after(self.last_id.clone().as_deref()),
        }))
    }

    fn cursor(&self) -> Option<&str> {
        self.last_id.as_deref()
    }
}

/// Makes one scan of a list terminate, whatever the source answers.
#[derive(Debug, Clone)]
pub struct ScanGuard {
    /// Hashes of the requests made (8 bytes a page).
    seen: HashSet<u64>,
    pages: u64,
    max_pages: u64,
}

impl ScanGuard {
    pub fn new(max_pages: u64) -> Self {
        ScanGuard {
            seen: HashSet::new(),
            pages: 0,
            max_pages: max_pages.max(1),
        }
    }

    /// Call before requesting `url`. Errors when the same request was made
    /// earlier in this scan (the source's cursor or next URL points back, so
    /// following it would loop) or when the scan reached its page limit.
    pub fn visit(&mut self, url: &Url) -> Result<(), String> {
        self.check(url)?;
        self.count()?;
        self.seen.insert(url_hash(url));
        Ok(())
    }

    /// Errors when `url` was requested earlier in this scan (without counting it).
    pub fn check(&self, url: &Url) -> Result<(), String> {
        if self.seen.contains(&url_hash(url)) {
            return Err(format!(
                "pagination loops: the next page is {url}, which this scan already read \
                 (the source's cursor or next-page link points back); stopping so the sync \
                 cannot run forever. Nothing is soft-deleted"
            ));
        }
        Ok(())
    }

    /// Count a page whose request cannot repeat (offsets computed here).
    pub fn count(&mut self) -> Result<(), String> {
        if self.pages >= self.max_pages {
            return Err(format!(
                "more than {} pages in one scan; stopping as a runaway pagination \
                 (raise --max-pages if the source really is this large)",
                self.max_pages
            ));
        }
        self.pages += 1;
        Ok(())
    }

    /// Pages counted so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }
}

fn url_hash(url: &Url) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    url.as_str().hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
