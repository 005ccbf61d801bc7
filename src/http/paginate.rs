//! Paginators as small state machines: first request → page → next request or done.
//!
//! They do no I/O. The connector asks for [`StartingAfter::next_url`], fetches
//! it, tells the paginator what the page said, and repeats until `None`.
//!
//! Pagination always terminates: a [`ScanGuard`] refuses a request already
//! made in the same scan (a next URL or cursor pointing back) and a scan past
//! its page limit, and a page that is empty while it says more follow is an
//! error, never the end of a complete scan.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use url::Url;

/// Pages one scan of one table may take before it is stopped as runaway
/// (`--max-pages`); far above any real list at any page size.
pub const DEFAULT_MAX_PAGES: u64 = 1_000_000;

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

/// The error for a page with no records that says more follow.
pub fn empty_but_more(signal: &str) -> String {
    format!(
        "the page is empty but says {signal}; the scan cannot be complete, so it stops here \
         and nothing is soft-deleted"
    )
}

/// Cursor pagination in the style of Stripe and Userflow: `limit` plus
/// `starting_after=<id of the last item>`, ending when `has_more` is false.
/// The server's `next_page_url` (relative or absolute) is followed when given.
#[derive(Debug, Clone)]
pub struct StartingAfter {
    endpoint: Url,
    limit: u32,
    next: Option<Url>,
    last_id: Option<String>,
    guard: ScanGuard,
}

/// What a list page said about what comes next.
#[derive(Debug, Clone, Default)]
pub struct PageInfo {
    pub has_more: bool,
    pub next_page_url: Option<String>,
    pub last_id: Option<String>,
    pub count: usize,
}

impl StartingAfter {
    /// Start at the beginning, or after `resume_after` (an id from saved
    /// state), reading at most `max_pages` pages.
    pub fn new(endpoint: Url, limit: u32, resume_after: Option<String>, max_pages: u64) -> Self {
        let mut p = StartingAfter {
            endpoint,
            limit,
            next: None,
            last_id: resume_after,
            guard: ScanGuard::new(max_pages),
        };
        p.next = Some(p.url_after(p.last_id.clone().as_deref()));
        p
    }

    fn url_after(&self, id: Option<&str>) -> Url {
        let mut u = self.endpoint.clone();
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("limit", &self.limit.to_string());
            if let Some(id) = id {
                q.append_pair("starting_after", id);
            }
        }
        u
    }

    /// The request to make next, or `None` when the list is exhausted.
    pub fn next_url(&self) -> Option<&Url> {
        self.next.as_ref()
    }

    /// The id the next page starts after (what state should record).
    pub fn cursor(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    pub fn pages(&self) -> u64 {
        self.guard.pages()
    }

    /// Advance past the page fetched from [`next_url`](Self::next_url).
    /// Errors when the page is empty but says `has_more`, when the server's
    /// `next_page_url` is not a URL, and when the next request was already
    /// made in this scan or the page limit is reached.
    pub fn advance(&mut self, page: PageInfo) -> Result<(), String> {
        if let Some(u) = &self.next {
            self.guard.visit(u)?;
        }
        if page.last_id.is_some() {
            self.last_id = page.last_id;
        }
        if !page.has_more {
            self.next = None;
            return Ok(());
        }
        if page.count == 0 {
            return Err(empty_but_more("has_more: true"));
        }
        let next = match page.next_page_url {
            Some(next) if !next.is_empty() => self
                .endpoint
                .join(&next)
                .map_err(|e| format!("next_page_url {next:?} is not a URL: {e}"))?,
            _ => self.url_after(self.last_id.clone().as_deref()),
        };
        self.guard.check(&next)?;
        self.next = Some(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Url {
        Url::parse("https://api.eu.userflow.com/users").unwrap()
    }

    #[test]
    fn first_page_then_relative_then_absolute_next_urls() {
        let mut p = StartingAfter::new(ep(), 100, None, 10);
        assert_eq!(
            p.next_url().unwrap().as_str(),
            "https://api.eu.userflow.com/users?limit=100"
        );
        p.advance(PageInfo {
            has_more: true,
            next_page_url: Some("/users?limit=100&starting_after=u_9".into()),
            last_id: Some("u_9".into()),
            count: 100,
        })
        .unwrap();
        assert_eq!(
            p.next_url().unwrap().as_str(),
            "https://api.eu.userflow.com/users?limit=100&starting_after=u_9"
        );
        p.advance(PageInfo {
            has_more: true,
            next_page_url: Some(
                "https://api.eu.userflow.com/users?limit=100&starting_after=u_19".into(),
            ),
            last_id: Some("u_19".into()),
            count: 100,
        })
        .unwrap();
        assert!(p
            .next_url()
            .unwrap()
            .as_str()
            .ends_with("starting_after=u_19"));
        assert_eq!(p.cursor(), Some("u_19"));
    }

    #[test]
    fn without_next_page_url_builds_the_cursor_itself() {
        let mut p = StartingAfter::new(ep(), 2, None, 10);
        p.advance(PageInfo {
            has_more: true,
            next_page_url: None,
            last_id: Some("a b".into()),
            count: 2,
        })
        .unwrap();
        assert_eq!(
            p.next_url().unwrap().as_str(),
            "https://api.eu.userflow.com/users?limit=2&starting_after=a+b"
        );
    }

    #[test]
    fn stops_on_has_more_false_and_refuses_an_empty_page_that_says_more() {
        let mut p = StartingAfter::new(ep(), 2, Some("u_5".into()), 10);
        assert!(p
            .next_url()
            .unwrap()
            .as_str()
            .ends_with("starting_after=u_5"));
        let e = p
            .advance(PageInfo {
                has_more: true,
                next_page_url: None,
                last_id: None,
                count: 0,
            })
            .unwrap_err();
        assert!(e.contains("empty but says has_more: true"), "{e}");
        let mut p = StartingAfter::new(ep(), 2, None, 10);
        p.advance(PageInfo {
            has_more: false,
            next_page_url: Some("/users?x".into()),
            last_id: Some("z".into()),
            count: 2,
        })
        .unwrap();
        assert!(p.next_url().is_none());
    }

    #[test]
    fn a_next_page_pointing_back_or_past_the_limit_is_an_error() {
        let page = |next: &str, last: &str| PageInfo {
            has_more: true,
            next_page_url: Some(next.into()),
            last_id: Some(last.into()),
            count: 2,
        };
        let mut p = StartingAfter::new(ep(), 2, None, 10);
        p.advance(page("/users?limit=2&starting_after=b", "b"))
            .unwrap();
        let e = p.advance(page("/users?limit=2", "d")).unwrap_err();
        assert!(
            e.contains("pagination loops") && e.contains("/users?limit=2"),
            "{e}"
        );
        // A cursor that never repeats still ends at the page limit.
        let mut p = StartingAfter::new(ep(), 2, None, 3);
        let mut err = None;
        for i in 0..10 {
            if let Err(e) = p.advance(page(&format!("/users?after={i}"), "x")) {
                err = Some((i, e));
                break;
            }
        }
        let (i, e) = err.expect("stopped");
        assert_eq!(i, 3);
        assert!(e.contains("more than 3 pages"), "{e}");
    }
}
