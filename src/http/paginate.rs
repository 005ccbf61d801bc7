//! Paginators as small state machines: first request → page → next request or done.
//!
//! They do no I/O. The connector asks for [`StartingAfter::next_url`], fetches
//! it, tells the paginator what the page said, and repeats until `None`.

use url::Url;

/// Cursor pagination in the style of Stripe and Userflow: `limit` plus
/// `starting_after=<id of the last item>`, ending when `has_more` is false.
/// The server's `next_page_url` (relative or absolute) is followed when given.
#[derive(Debug, Clone)]
pub struct StartingAfter {
    endpoint: Url,
    limit: u32,
    next: Option<Url>,
    last_id: Option<String>,
    pages: u64,
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
    /// Start at the beginning, or after `resume_after` (an id from saved state).
    pub fn new(endpoint: Url, limit: u32, resume_after: Option<String>) -> Self {
        let mut p = StartingAfter {
            endpoint,
            limit,
            next: None,
            last_id: resume_after,
            pages: 0,
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
        self.pages
    }

    /// Advance past a page. Errors when the server's `next_page_url` is not a URL.
    pub fn advance(&mut self, page: PageInfo) -> Result<(), String> {
        self.pages += 1;
        if page.last_id.is_some() {
            self.last_id = page.last_id;
        }
        // Stop on has_more=false, and defensively on an empty page.
        if !page.has_more || page.count == 0 {
            self.next = None;
            return Ok(());
        }
        self.next = Some(match page.next_page_url {
            Some(next) if !next.is_empty() => self
                .endpoint
                .join(&next)
                .map_err(|e| format!("next_page_url {next:?} is not a URL: {e}"))?,
            _ => self.url_after(self.last_id.clone().as_deref()),
        });
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
        let mut p = StartingAfter::new(ep(), 100, None);
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
        let mut p = StartingAfter::new(ep(), 2, None);
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
    fn stops_on_has_more_false_or_empty_page() {
        let mut p = StartingAfter::new(ep(), 2, Some("u_5".into()));
        assert!(p
            .next_url()
            .unwrap()
            .as_str()
            .ends_with("starting_after=u_5"));
        p.advance(PageInfo {
            has_more: true,
            next_page_url: None,
            last_id: None,
            count: 0,
        })
        .unwrap();
        assert!(p.next_url().is_none());
        assert_eq!(p.cursor(), Some("u_5"));
        let mut p = StartingAfter::new(ep(), 2, None);
        p.advance(PageInfo {
            has_more: false,
            next_page_url: Some("/users?x".into()),
            last_id: Some("z".into()),
            count: 2,
        })
        .unwrap();
        assert!(p.next_url().is_none());
    }
}
