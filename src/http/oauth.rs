//! An OAuth 2.0 Bearer token that refreshes itself: `grant_type=refresh_token`
//! at the token endpoint on a 401 or shortly before it expires, one refresh
//! at a time however many requests are in flight. A refresh token the server
//! rotates replaces the old one; [`OAuth::refresh_token`] hands the current one
//! to the connector, which keeps it (sealed) in its state.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use super::{Classifier, HttpClient, HttpError, Request, Secret, Verdict};

/// Refresh this long before the token's announced expiry (or a quarter of
/// its lifetime, for short-lived tokens).
const EARLY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Tokens {
    access: Secret,
    refresh: Option<Secret>,
    /// When to refresh it; `None`: the server said the token does not
    /// expire (Egnyte: `-1`).
    refresh_at: Option<Instant>,
    /// Bumped by every refresh, so a request knows whether its token is stale.
    generation: u64,
    /// The refresh token changed since the configuration's.
    rotated: bool,
}

/// How a new access token is obtained.
#[derive(Debug, Clone)]
pub enum Grant {
    /// `grant_type=refresh_token` (form body, or the query string as HubSpot's example sends it).
    RefreshToken { in_query: bool },
    /// `grant_type=client_credentials` with the client's id and secret.
    ClientCredentials { scope: Option<String> },
    /// POST this JSON to the token URL and read the token at `token_field`
    /// (session-token logins), its lifetime at `expires_in_field`.
    Login {
        body: serde_json::Value,
        token_field: Vec<String>,
        expires_in_field: Option<Vec<String>>,
    },
}

pub struct OAuth {
    grant: Grant,
    /// What precedes the token in `Authorization` (`Bearer`, `Token`); empty: the token alone.
    scheme: String,
    token_url: Url,
    client_id: Option<String>,
    client_secret: Option<Secret>,
    tokens: RwLock<Tokens>,
    /// One refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    http: HttpClient,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl OAuth {
    /// `http` sends the token requests (its rate budget and retries apply);
    /// the token endpoint's 409 (throttled) is retried after `Retry-After`.
    pub fn new(
        access: Secret,
        refresh: Option<Secret>,
        token_url: Url,
        client_id: Option<String>,
        client_secret: Option<Secret>,
        http: HttpClient,
    ) -> Arc<Self> {
        let grant = Grant::RefreshToken { in_query: false };
        Arc::new(Self::build(
            grant,
            "Bearer",
            access,
            refresh,
            token_url,
            client_id,
            client_secret,
            http,
        ))
    }

    /// A token that starts empty and is obtained with `grant` before the
    /// first request (`refresh`: the refresh token of a `RefreshToken` grant).
    pub fn with_grant(
        grant: Grant,
        scheme: &str,
        refresh: Option<Secret>,
        token_url: Url,
        client_id: Option<String>,
        client_secret: Option<Secret>,
        http: HttpClient,
    ) -> Arc<Self> {
        let access = Secret::new("");
        Arc::new(Self::build(
            grant,
            scheme,
            access,
            refresh,
            token_url,
            client_id,
            client_secret,
            http,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        grant: Grant,
        scheme: &str,
        access: Secret,
        refresh: Option<Secret>,
        token_url: Url,
        client_id: Option<String>,
        client_secret: Option<Secret>,
        http: HttpClient,
    ) -> Self {
        let throttled: Classifier = Arc::new(|r: &super::Response| {
            (r.status.as_u16() == 409).then(|| Verdict::Retry(super::retry_after(&r.headers)))
        });
        let mut known: Vec<&Secret> = vec![&access];
        known.extend(refresh.iter());
        known.extend(client_secret.iter());
        let http = http.with_classifier(throttled).with_secrets(&known);
        OAuth {
            grant,
            scheme: scheme.trim().to_string(),
            token_url,
            client_id,
            client_secret,
            tokens: RwLock::new(Tokens {
                access,
                refresh,
                refresh_at: None,
                generation: 0,
                rotated: false,
            }),
            refreshing: tokio::sync::Mutex::new(()),
            http,
        }
    }

    /// What precedes the token in `Authorization`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    pub fn access(&self) -> Secret {
        self.tokens.read().unwrap().access.clone()
    }

    pub fn generation(&self) -> u64 {
        self.tokens.read().unwrap().generation
    }

    pub fn can_refresh(&self) -> bool {
        self.renewable(&self.tokens.read().unwrap())
    }

    /// A new token can be had: a refresh token is known, or the grant needs none.
    fn renewable(&self, t: &Tokens) -> bool {
        t.refresh.is_some() || !matches!(self.grant, Grant::RefreshToken { .. })
    }

    /// The token is about to expire, or not obtained yet (and can be renewed).
    pub fn expiring(&self) -> bool {
        let t = self.tokens.read().unwrap();
        self.renewable(&t)
            && (t.access.expose().is_empty() || t.refresh_at.is_some_and(|at| Instant::now() >= at))
    }

    /// Use this refresh token (one rotated by an earlier run) from now on.
    pub fn use_refresh_token(&self, t: Secret) {
        self.tokens.write().unwrap().refresh = Some(t);
    }

    /// The current refresh token, if the server rotated it.
    pub fn rotated_refresh_token(&self) -> Option<Secret> {
        let t = self.tokens.read().unwrap();
        t.rotated.then(|| t.refresh.clone()).flatten()
    }

    /// Every token value, for redaction.
    pub fn secrets(&self) -> Vec<String> {
        let t = self.tokens.read().unwrap();
        let mut v = vec![t.access.expose().to_string()];
        v.extend(t.refresh.iter().map(|r| r.expose().to_string()));
        v.extend(self.client_secret.iter().map(|s| s.expose().to_string()));
        v.retain(|s| !s.is_empty());
        v
    }

    /// Get a new access token unless another request already did since
    /// `seen` (the generation of the token that was refused).
    pub fn refresh(&self, seen: u64) -> BoxFuture<'_, Result<(), HttpError>> {
        // Boxed: a token request goes through `HttpClient::send`, which calls this.
        Box::pin(self.refresh_now(seen))
    }

    /// The token request of this grant (`refresh`: the refresh token, if any).
    fn token_request(&self, refresh: &Secret) -> Request {
        let form_req = |pairs: Vec<(&str, &str)>, in_query: bool| {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                form.append_pair(k, v);
            }
            if let Some(id) = &self.client_id {
                form.append_pair("client_id", id);
            }
            if let Some(s) = &self.client_secret {
                form.append_pair("client_secret", s.expose());
            }
            let form = form.finish();
            let mut url = self.token_url.clone();
            let body = if in_query {
                url.set_query(Some(&form));
                None
            } else {
                Some(form.into())
            };
            Request {
                method: reqwest::Method::POST,
                url,
                headers: vec![(
                    reqwest::header::CONTENT_TYPE,
                    reqwest::header::HeaderValue::from_static("application/x-www-form-urlencoded"),
                )],
                body,
            }
        };
        match &self.grant {
            Grant::RefreshToken { in_query } => form_req(
                vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.expose()),
                ],
                *in_query,
            ),
            Grant::ClientCredentials { scope } => {
                let mut pairs = vec![("grant_type", "client_credentials")];
                if let Some(s) = scope {
                    pairs.push(("scope", s.as_str()));
                }
                form_req(pairs, false)
            }
            Grant::Login { body, .. } => Request::post_json(self.token_url.clone(), body),
        }
    }

    async fn refresh_now(&self, seen: u64) -> Result<(), HttpError> {
        let _one = self.refreshing.lock().await;
        let refresh = {
            let t = self.tokens.read().unwrap();
            if t.generation != seen {
                return Ok(());
            }
            if !self.renewable(&t) {
                return Ok(());
            }
            t.refresh.clone().unwrap_or_else(|| Secret::new(""))
        };
        let req = self.token_request(&refresh);
        let resp = self.http.send(req).await?;
        let parsed: TokenResponse = match &self.grant {
            Grant::Login {
                token_field,
                expires_in_field,
                ..
            } => login_token(&resp.body, token_field, expires_in_field.as_deref()),
            _ => serde_json::from_slice(&resp.body).map_err(|e| e.to_string()),
        }
        .map_err(|e| HttpError {
            method: "POST".into(),
            url: self.token_url.to_string(),
            attempts: 1,
            kind: super::HttpErrorKind::Transport(format!(
                "the token endpoint's answer is not a token: {e}"
            )),
        })?;
        let expires_in = parsed.expires_in.and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        let mut t = self.tokens.write().unwrap();
        t.access = Secret::new(parsed.access_token);
        t.refresh_at = expires_in.filter(|s| *s > 0).map(|s| {
            let life = Duration::from_secs(s as u64);
            Instant::now() + life - EARLY.min(life / 4)
        });
        if let Some(r) = parsed
            .refresh_token
            .filter(|r| !r.is_empty() && matches!(self.grant, Grant::RefreshToken { .. }))
        {
            if t.refresh.as_ref().map(Secret::expose) != Some(r.as_str()) {
                t.refresh = Some(Secret::new(r));
                t.rotated = true;
            }
        }
        t.generation += 1;
        tracing::info!(
            expires_in_secs = expires_in.unwrap_or(-1),
            rotated = t.rotated,
            "access token refreshed"
        );
        Ok(())
    }
}

/// The token of a login answer: the string at `token_field`, its lifetime at `expires_in_field`.
fn login_token(
    body: &[u8],
    token_field: &[String],
    expires_in_field: Option<&[String]>,
) -> Result<TokenResponse, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({e})"))?;
    let at = |path: &[String]| path.iter().try_fold(&v, |cur, k| cur.get(k));
    let token = match at(token_field) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(format!("no token at {:?}", token_field.join("."))),
    };
    Ok(TokenResponse {
        access_token: token,
        refresh_token: None,
        expires_in: expires_in_field.and_then(at).cloned(),
    })
}

impl super::TokenSource for OAuth {
    fn scheme(&self) -> &str {
        OAuth::scheme(self)
    }
    fn access(&self) -> Secret {
        OAuth::access(self)
    }
    fn generation(&self) -> u64 {
        OAuth::generation(self)
    }
    fn can_refresh(&self) -> bool {
        OAuth::can_refresh(self)
    }
    fn expiring(&self) -> bool {
        OAuth::expiring(self)
    }
    fn secrets(&self) -> Vec<String> {
        OAuth::secrets(self)
    }
    fn refresh(&self, seen: u64) -> BoxFuture<'_, Result<(), HttpError>> {
        OAuth::refresh(self, seen)
    }
}
