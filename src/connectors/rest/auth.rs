//! A spec's `[auth]` as the HTTP client's authentication: a fixed header
//! or query parameter, or a renewable token (OAuth grants, login sessions)
//! whose token requests go through `plain`, a client without credentials.

use super::cursor::join_url;
use super::spec::{AuthSpec, KeyPlace, Session, Spec};
use crate::error::{Error, Result};
use crate::http::oauth::{Grant, OAuth};
use crate::http::{Auth, HttpClient, Secret};

pub(super) fn client_auth(spec: &Spec, plain: HttpClient) -> Result<Auth> {
    Ok(match &spec.auth {
        AuthSpec::None => Auth::None,
        AuthSpec::Bearer { token } => Auth::Bearer(token.clone()),
        AuthSpec::Basic { username, password } => {
            use base64::Engine as _;
            let b = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            Auth::Header(
                reqwest::header::AUTHORIZATION,
                Secret::new(format!("Basic {b}")),
            )
        }
        AuthSpec::ApiKey {
            key,
            place: KeyPlace::Header(h),
            prefix,
        } => Auth::Header(
            reqwest::header::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                Error::config(
                    Some(&spec.path),
                    format!("auth.header: {h:?} is not a header name"),
                )
            })?,
            Secret::new(format!("{prefix}{}", key.expose())),
        ),
        AuthSpec::ApiKey {
            key,
            place: KeyPlace::Query(p),
            prefix,
        } => Auth::Query(p.clone(), Secret::new(format!("{prefix}{}", key.expose()))),
        AuthSpec::Session(session) => session_auth(spec, session, &plain)?,
        AuthSpec::OAuthRefresh {
            token_url,
            client_id,
            client_secret,
            refresh_token,
            in_query,
        } => Auth::OAuth(OAuth::with_grant(
            Grant::RefreshToken {
                in_query: *in_query,
            },
            "Bearer",
            Some(refresh_token.clone()),
            token_url.clone(),
            client_id.clone(),
            client_secret.clone(),
            plain.clone(),
        )),
        AuthSpec::OAuthClientCredentials {
            token_url,
            client_id,
            client_secret,
            scope,
        } => Auth::OAuth(OAuth::with_grant(
            Grant::ClientCredentials {
                scope: scope.clone(),
            },
            "Bearer",
            None,
            token_url.clone(),
            Some(client_id.clone()),
            Some(client_secret.clone()),
            plain.clone(),
        )),
    })
}

/// A login session: the token a login request answers, sent as `prefix token`.
fn session_auth(spec: &Spec, session: &Session, plain: &HttpClient) -> Result<Auth> {
    let Session {
        login_path,
        body,
        token_field,
        expires_in_field,
        header,
        prefix,
    } = session;
    if !header.eq_ignore_ascii_case("authorization") {
        return Err(Error::config(
            Some(&spec.path),
            "auth.header: a session token is sent in Authorization",
        ));
    }
    let plain = plain
        .clone()
        .with_secrets(&spec.secrets.iter().collect::<Vec<_>>());
    Ok(Auth::OAuth(OAuth::with_grant(
        Grant::Login {
            body: body.clone(),
            token_field: token_field.clone(),
            expires_in_field: expires_in_field.clone(),
        },
        prefix,
        None,
        join_url(&spec.base_url, login_path)?,
        None,
        None,
        plain,
    )))
}
