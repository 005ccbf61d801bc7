use super::*;
use serde_json::json;

fn ep() -> Url {
    Url::parse("https://api.eu.userflow.com/users").unwrap()
}

/// Show `p` a page asked for at `url` and return the next request.
fn turn(
    p: &mut dyn Paginator,
    url: &Url,
    envelope: Value,
    records: u64,
    last: Option<&str>,
) -> Result<Option<Url>, String> {
    let headers = HeaderMap::new();
    p.next(&PageView {
        url,
        response_url: url,
        headers: &headers,
        envelope: &envelope,
        records,
        last_record: last,
        max_cursor: None,
    })
}

#[test]
fn starting_after_follows_relative_then_absolute_next_urls() {
    let mut p = StartingAfter::new(100, None);
    let u = p.start(ep());
    assert_eq!(u.as_str(), "https://api.eu.userflow.com/users?limit=100");
    let u = turn(
        &mut p,
        &u,
        json!({"has_more": true, "next_page_url": "/users?limit=100&starting_after=u_9"}),
        100,
        Some(r#"{"id": "u_9"}"#),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        u.as_str(),
        "https://api.eu.userflow.com/users?limit=100&starting_after=u_9"
    );
    let u = turn(&mut p, &u, json!({"has_more": true, "next_page_url": "https://api.eu.userflow.com/users?limit=100&starting_after=u_19"}), 100, Some(r#"{"id": "u_19"}"#))
        .unwrap()
        .unwrap();
    assert!(u.as_str().ends_with("starting_after=u_19"));
    assert_eq!(p.last_id.as_deref(), Some("u_19"));
}

#[test]
fn starting_after_builds_the_cursor_itself_without_next_page_url() {
    let mut p = StartingAfter::new(2, None);
    let u = p.start(ep());
    let u = turn(
        &mut p,
        &u,
        json!({"has_more": true, "next_page_url": null}),
        2,
        Some(r#"{"id": "a b"}"#),
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        u.as_str(),
        "https://api.eu.userflow.com/users?limit=2&starting_after=a+b"
    );
}

#[test]
fn starting_after_stops_on_has_more_false_and_refuses_an_empty_page_that_says_more() {
    let mut p = StartingAfter::new(2, Some("u_5".into()));
    let u = p.start(ep());
    assert!(u.as_str().ends_with("starting_after=u_5"));
    let e = turn(&mut p, &u, json!({"has_more": true}), 0, None).unwrap_err();
    assert!(e.contains("empty but says has_more: true"), "{e}");
    let mut p = StartingAfter::new(2, None);
    let u = p.start(ep());
    assert_eq!(
        turn(
            &mut p,
            &u,
            json!({"has_more": false, "next_page_url": "/users?x"}),
            2,
            Some(r#"{"id": "z"}"#)
        ),
        Ok(None)
    );
    let e = turn(&mut p, &u, json!({"data": []}), 0, None).unwrap_err();
    assert!(e.contains("no \"has_more\""), "{e}");
}

#[test]
fn the_guard_refuses_a_request_made_twice_and_a_scan_past_its_limit() {
    let mut g = ScanGuard::new(10);
    g.visit(&ep()).unwrap();
    let e = g.check(&ep()).unwrap_err();
    assert!(
        e.contains("pagination loops") && e.contains("/users"),
        "{e}"
    );
    let mut g = ScanGuard::new(3);
    let mut err = None;
    for i in 0..10 {
        if let Err(e) = g.visit(&Url::parse(&format!("https://x/users?after={i}")).unwrap()) {
            err = Some((i, e));
            break;
        }
    }
    let (i, e) = err.expect("stopped");
    assert_eq!(i, 3);
    assert!(e.contains("more than 3 pages"), "{e}");
}

#[test]
fn offset_ends_at_the_total_or_a_short_page_and_lists_the_rest() {
    let mut p = Offset {
        offset_param: "offset".into(),
        limit_param: "limit".into(),
        limit: 10,
        total_field: Some(vec!["meta".into(), "total".into()]),
        position: 0,
    };
    let u = p.start(Url::parse("https://x/items?q=1").unwrap());
    assert_eq!(u.query(), Some("q=1&limit=10&offset=0"));
    // The server caps pages at 4: the rest are listed in steps of 4.
    let env = json!({"meta": {"total": "13"}});
    let n = turn(&mut p, &u, env.clone(), 4, None).unwrap().unwrap();
    assert_eq!(n.query(), Some("q=1&limit=10&offset=4"));
    let headers = HeaderMap::new();
    let view = PageView {
        url: &u,
        response_url: &u,
        headers: &headers,
        envelope: &env,
        records: 4,
        last_record: None,
        max_cursor: None,
    };
    let rest: Vec<String> = p
        .remaining(&view)
        .unwrap()
        .iter()
        .map(|u| u.query().unwrap().to_string())
        .collect();
    assert_eq!(
        rest,
        [
            "q=1&limit=10&offset=4",
            "q=1&limit=10&offset=8",
            "q=1&limit=10&offset=12"
        ]
    );
    assert_eq!(p.total_records(&view), Some(13));
    let e = turn(&mut p, &n, env, 0, None).unwrap_err();
    assert!(e.contains("a total of 13 at offset 4"), "{e}");
    // Without a total, a short page is the last.
    let mut p = Offset {
        offset_param: "o".into(),
        limit_param: "l".into(),
        limit: 10,
        total_field: None,
        position: 0,
    };
    let u = p.start(Url::parse("https://x/").unwrap());
    assert!(turn(&mut p, &u, Value::Null, 10, None).unwrap().is_some());
    assert_eq!(turn(&mut p, &u, Value::Null, 9, None), Ok(None));
}

#[test]
fn page_numbers_end_at_the_page_count_or_an_empty_page() {
    let mut p = PageNumber {
        page_param: "page".into(),
        size_param: Some("size".into()),
        size: None,
        start: 1,
        total_pages_field: Some(vec!["pages".into()]),
        position: 0,
    };
    let u = p.start(Url::parse("https://x/").unwrap());
    assert_eq!(u.query(), Some("page=1"));
    let n = turn(&mut p, &u, json!({"pages": 3}), 5, None)
        .unwrap()
        .unwrap();
    assert_eq!(n.query(), Some("page=2"));
    let headers = HeaderMap::new();
    let env = json!({"pages": 3});
    let view = PageView {
        url: &u,
        response_url: &u,
        headers: &headers,
        envelope: &env,
        records: 5,
        last_record: None,
        max_cursor: None,
    };
    assert_eq!(p.remaining(&view).unwrap().len(), 2);
    let e = turn(&mut p, &n, json!({"pages": 3}), 0, None).unwrap_err();
    assert!(e.contains("3 pages in all at page 2"), "{e}");
    let mut p = PageNumber {
        page_param: "p".into(),
        size_param: None,
        size: None,
        start: 0,
        total_pages_field: None,
        position: 0,
    };
    let u = p.start(Url::parse("https://x/").unwrap());
    assert!(turn(&mut p, &u, Value::Null, 3, None).unwrap().is_some());
    assert_eq!(turn(&mut p, &u, Value::Null, 0, None), Ok(None));
}

#[test]
fn next_url_from_the_body_or_the_link_header() {
    let mut p = NextUrl {
        field: Some(vec!["next".into()]),
    };
    let u = p.start(Url::parse("https://x/a/items").unwrap());
    let n = turn(&mut p, &u, json!({"next": "items?page=2"}), 1, None)
        .unwrap()
        .unwrap();
    assert_eq!(n.as_str(), "https://x/a/items?page=2");
    assert_eq!(turn(&mut p, &u, json!({"next": ""}), 1, None), Ok(None));
    let mut h = HeaderMap::new();
    h.insert(
        reqwest::header::LINK,
        r#"<https://x/api?page=1>; rel="prev", <https://x/api?page=3>; rel="next""#
            .parse()
            .unwrap(),
    );
    assert_eq!(link_next(&h).as_deref(), Some("https://x/api?page=3"));
    let mut p = NextUrl { field: None };
    let view = PageView {
        url: &u,
        response_url: &u,
        headers: &h,
        envelope: &Value::Null,
        records: 1,
        last_record: None,
        max_cursor: None,
    };
    assert_eq!(
        p.next(&view).unwrap().unwrap().as_str(),
        "https://x/api?page=3"
    );
}

#[test]
fn tokens_follow_has_more_and_keyset_resumes_by_cursor() {
    let mut p = Token {
        token_field: vec!["next".into()],
        param: "cursor".into(),
        has_more_field: Some(vec!["more".into()]),
    };
    let u = p.start(Url::parse("https://x/?q=1").unwrap());
    let n = turn(&mut p, &u, json!({"next": "t1", "more": true}), 2, None)
        .unwrap()
        .unwrap();
    assert_eq!(n.query(), Some("q=1&cursor=t1"));
    assert_eq!(
        turn(&mut p, &n, json!({"next": "t2", "more": false}), 2, None),
        Ok(None)
    );
    assert!(turn(&mut p, &n, json!({"next": "t2", "more": true}), 0, None).is_err());

    let mut p = Keyset::new(vec!["scroll".into()], "scroll_id".into(), None);
    let u = p.start(Url::parse("https://x/?since=a").unwrap());
    let n = turn(&mut p, &u, json!({"scroll": 7}), 2, None)
        .unwrap()
        .unwrap();
    assert_eq!(n.query(), Some("scroll_id=7"));
    let mut p = Keyset::new(
        vec!["scroll".into()],
        "scroll_id".into(),
        Some("since".into()),
    );
    let u = p.start(Url::parse("https://x/?since=a").unwrap());
    let headers = HeaderMap::new();
    let env = json!({"scroll": 7});
    let view = |url, c| PageView {
        url,
        response_url: url,
        headers: &headers,
        envelope: &env,
        records: 2,
        last_record: None,
        max_cursor: c,
    };
    let n = p.next(&view(&u, Some("c"))).unwrap().unwrap();
    assert_eq!(n.query(), Some("since=c"));
    // A whole page at one cursor value: the token moves on.
    let n2 = p.next(&view(&n, Some("c"))).unwrap().unwrap();
    assert_eq!(n2.query(), Some("scroll_id=7"));
}

#[test]
fn scim_and_step_windows() {
    let mut p = Scim {
        start_param: "startIndex".into(),
        count_param: "count".into(),
        count: 2,
        total_field: vec!["totalResults".into()],
        position: 0,
    };
    let u = p.start(Url::parse("https://x/Users").unwrap());
    assert_eq!(u.query(), Some("startIndex=1&count=2"));
    let n = turn(&mut p, &u, json!({"totalResults": 3}), 2, None)
        .unwrap()
        .unwrap();
    assert_eq!(n.query(), Some("count=2&startIndex=3"));
    assert_eq!(
        turn(&mut p, &n, json!({"totalResults": 3}), 1, None),
        Ok(None)
    );
    let e = turn(&mut p, &n, json!({"totalResults": 9}), 0, None).unwrap_err();
    assert!(e.contains("totalResults 9 at startIndex 4"), "{e}");

    let mut p = Step {
        start_param: "from".into(),
        end_param: "to".into(),
        step: 1000,
        position: 2001,
    };
    let u = p.start(Url::parse("https://x/").unwrap());
    assert_eq!(u.query(), Some("from=2001&to=3000"));
    let n = turn(&mut p, &u, Value::Null, 5, None).unwrap().unwrap();
    assert_eq!(
        (n.query(), p.position()),
        (Some("from=3001&to=4000"), Some(3001))
    );
    assert_eq!(turn(&mut p, &n, Value::Null, 0, None), Ok(None));
}
