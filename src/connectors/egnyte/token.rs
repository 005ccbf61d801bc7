//! Egnyte's throttling signals (Mashery's 403 codes) and the rotated
//! refresh token kept in the destination's state, sealed with a key
//! derived from the configured credentials.

use super::*;

/// Egnyte's throttling: 403 with a Mashery error code.
pub(super) fn mashery() -> Classifier {
    Arc::new(|r: &Response| {
        let code = r
            .headers
            .get("x-mashery-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match (r.status.as_u16(), code) {
            (403, "ERR_403_DEVELOPER_OVER_QPS") => Some(Verdict::Retry(Some(
                retry_after(&r.headers).unwrap_or(Duration::from_secs(1)),
            ))),
            (403, "ERR_403_DEVELOPER_OVER_RATE") => Some(Verdict::Quota(retry_after(&r.headers))),
            (403, "ERR_403_DEVELOPER_INACTIVE") => Some(Verdict::Unauthorized),
            _ => None,
        }
    })
}

/// The key sealing a rotated refresh token: derived from the configured
/// credentials, so the state alone does not reveal it.
pub(super) fn sealing_key(cfg: &EgnyteConfig) -> Option<Aes256Gcm> {
    let refresh = cfg.refresh_token.as_ref()?;
    let mut h = Sha256::new();
    h.update(b"etl egnyte refresh token v1\0");
    h.update(refresh.expose().as_bytes());
    h.update(b"\0");
    h.update(
        cfg.client_secret
            .as_ref()
            .map_or("", |s| s.expose())
            .as_bytes(),
    );
    Aes256Gcm::new_from_slice(&h.finalize()).ok()
}

pub(super) fn seal(key: &Aes256Gcm, token: &Secret) -> String {
    let nonce: [u8; 12] = rand::random();
    let ct = key
        .encrypt(Nonce::from_slice(&nonce), token.expose().as_bytes())
        .expect("AES-GCM encrypts");
    let mut out = nonce.to_vec();
    out.extend(ct);
    base64::engine::general_purpose::STANDARD.encode(out)
}

pub(super) fn unseal(key: &Aes256Gcm, sealed: &str) -> Option<Secret> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .ok()?;
    if bytes.len() < 13 {
        return None;
    }
    let (nonce, ct) = bytes.split_at(12);
    let plain = key.decrypt(Nonce::from_slice(nonce), ct).ok()?;
    String::from_utf8(plain).ok().map(Secret::new)
}

impl Egnyte {
    /// Keep a rotated refresh token, sealed, in the state, committed now.
    pub(super) async fn save_rotated_token(
        &self,
        ctx: &SyncContext,
        saved: &mut Option<String>,
    ) -> Result<()> {
        let (Some(o), Some(key)) = (&self.oauth, sealing_key(&self.cfg)) else {
            return Ok(());
        };
        let Some(token) = o.rotated_refresh_token() else {
            return Ok(());
        };
        if saved.as_deref() == Some(token.expose()) {
            return Ok(());
        }
        *saved = Some(token.expose().to_string());
        ctx.emit
            .commit_now(
                AUTH_STREAM,
                json!({"refresh_token_sealed": seal(&key, &token)}),
            )
            .await
    }
}
