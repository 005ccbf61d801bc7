//! Redaction of credentials from every text that leaves the HTTP layer.
//!
//! A server may echo a credential back in an error body, and a URL may carry
//! one in its query; either way it must never reach a log, an error, state
//! or the destination. A secret is searched for in every form it can take on
//! the way: as configured, the token part of an `Authorization` value
//! (`Basic dXNlcjpwYXNz` echoed without its scheme), percent-encoded as in a
//! query string (form style with `+` for space, and path style, in upper and
//! lower case hex), JSON-escaped, and base64 of the raw value. Redaction runs
//! on the whole text before anything is shortened, so a cut can never leave
//! the first characters of a key behind.

use base64::Engine as _;

/// Shortest form redacted: shorter fragments would blank ordinary words.
const MIN_LEN: usize = 4;

/// Every form of `secret` worth searching for, longest first.
pub fn forms(secret: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: String| {
        if s.len() >= MIN_LEN && !out.contains(&s) {
            out.push(s);
        }
    };
    let mut bases = vec![secret.to_string()];
    // `Basic abc=` / `Bearer tok` / `Token tok`: the credential after the scheme.
    if let Some((scheme, token)) = secret.split_once(' ') {
        if !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            bases.push(token.trim().to_string());
        }
    }
    for b in &bases {
        add(b.clone());
        add(url::form_urlencoded::byte_serialize(b.as_bytes()).collect());
        add(url::form_urlencoded::byte_serialize(b.as_bytes())
            .collect::<String>()
            .to_lowercase_hex());
        add(percent_encode(b, true));
        add(percent_encode(b, false));
        if let Ok(j) = serde_json::to_string(b) {
            let inner = &j[1..j.len() - 1];
            add(inner.to_string());
            add(inner.replace('/', "\\/"));
        }
        add(base64::engine::general_purpose::STANDARD.encode(b.as_bytes()));
        add(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b.as_bytes()));
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// Replace every form of every secret in `text` with `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut all: Vec<String> = secrets.iter().flat_map(|s| forms(s)).collect();
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in &all {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// Percent-encode every byte outside RFC 3986's unreserved set.
fn percent_encode(s: &str, upper: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

trait LowerHex {
    fn to_lowercase_hex(&self) -> String;
}

impl LowerHex for String {
    /// `%2F` → `%2f` (some servers echo escapes in lower case).
    fn to_lowercase_hex(&self) -> String {
        let mut out = String::with_capacity(self.len());
        let mut chars = self.chars().peekable();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '%' {
                for _ in 0..2 {
                    if let Some(h) = chars.next() {
                        out.push(h.to_ascii_lowercase());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_of_a_key_is_redacted() {
        let key = "k+y/with=odd&chars";
        let secrets = vec![key.to_string()];
        let form: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
        assert_eq!(form, "k%2By%2Fwith%3Dodd%26chars");
        for text in [
            format!("echo {key}!"),
            format!("GET http://h/x?api_key={form}&a=1"),
            format!("GET http://h/x?api_key={}", form.to_lowercase_hex()),
            format!("{{\"key\": {}}}", serde_json::to_string(key).unwrap()),
            format!(
                "b64 {}",
                base64::engine::general_purpose::STANDARD.encode(key)
            ),
        ] {
            let r = redact(&text, &secrets);
            assert!(r.contains("***"), "{text} → {r}");
            assert!(!r.contains("with"), "{text} → {r}");
        }
    }

    #[test]
    fn basic_credentials_without_their_scheme() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("user:p4ssw0rd");
        let header = format!("Basic {b64}");
        let r = redact(&format!("unauthorized: {b64}"), &[header]);
        assert_eq!(r, "unauthorized: ***");
        let r = redact("token xyz", &["ab".into()]);
        assert_eq!(r, "token xyz", "fragments under 4 characters are left");
    }
}
