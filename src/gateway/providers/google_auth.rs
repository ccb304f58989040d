//! Google credentials for Vertex AI: the two kinds LiteLLM users put in
//! `vertex_credentials` (or point `GOOGLE_APPLICATION_CREDENTIALS` at), as
//! Google's `google-auth` reads them:
//!
//! - `authorized_user` (what `gcloud auth application-default login`
//!   writes): a refresh token exchanged at `token_uri` for access tokens;
//! - `service_account` (a key file): a JWT signed with the account's RSA
//!   key (RS256, `ring`, already in the tree through rustls) exchanged at
//!   `token_uri` (RFC 7523).
//!
//! The credentials are parsed and the key is checked when the config is
//! loaded (a bad file makes the deployment unavailable with the reason);
//! access tokens are fetched on first use, cached until a minute before
//! they expire, and refreshed by one caller while the others wait. No
//! credential is ever logged or put in an error message.

use crate::gateway::error::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Google's token endpoint, when the credentials do not name one.
pub(crate) const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// A token this close to its expiry is refreshed before use.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);
/// How long a token request may take (connect included).
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

enum Grant {
    RefreshToken { client_id: String, client_secret: String, refresh_token: String },
    ServiceAccount { client_email: String, key_id: Option<String>, key: Box<ring::signature::RsaKeyPair> },
}

/// One deployment's source of access tokens.
pub struct TokenSource {
    grant: Grant,
    token_uri: String,
    cached: tokio::sync::Mutex<Option<(String, SystemTime)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.grant {
            Grant::RefreshToken { .. } => "authorized_user",
            Grant::ServiceAccount { .. } => "service_account",
        };
        f.debug_struct("TokenSource").field("kind", &kind).field("token_uri", &self.token_uri).finish()
    }
}

/// Why `vertex_credentials` (or the file `GOOGLE_APPLICATION_CREDENTIALS`
/// names) cannot be used. Never shows a secret: a field is named, not its value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CredentialsError {
    #[error("vertex_credentials: cannot read the credentials file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("vertex_credentials: not JSON ({reason})")]
    NotJson { reason: String },
    #[error("vertex_credentials: `{field}` is missing")]
    Missing { field: &'static str },
    #[error(
        "vertex_credentials: credentials of type `{kind}` are not supported (authorized_user and service_account are)"
    )]
    UnsupportedType { kind: String },
    #[error("vertex_credentials: `private_key` is not a PEM key")]
    NotPem,
    #[error("vertex_credentials: `private_key` is not a PKCS#8 RSA key ({reason})")]
    NotRsa { reason: String },
}

impl TokenSource {
    /// Reads `vertex_credentials`: the JSON itself, or the path of a file
    /// holding it (as LiteLLM takes either).
    pub fn from_config(value: &str) -> Result<TokenSource, CredentialsError> {
        let text = value.trim();
        if text.starts_with('{') {
            return Self::from_json(text);
        }
        let json = std::fs::read_to_string(text)
            .map_err(|e| CredentialsError::Unreadable { path: text.to_string(), reason: e.to_string() })?;
        Self::from_json(&json)
    }

    pub fn from_json(text: &str) -> Result<TokenSource, CredentialsError> {
        let v: Value = serde_json::from_str(text).map_err(|e| CredentialsError::NotJson { reason: e.to_string() })?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
        let need = |k: &'static str| field(k).ok_or(CredentialsError::Missing { field: k });
        let token_uri = field("token_uri").unwrap_or_else(|| GOOGLE_TOKEN_URI.to_string());
        let grant = match field("type").as_deref() {
            Some("authorized_user") => Grant::RefreshToken {
                client_id: need("client_id")?,
                client_secret: need("client_secret")?,
                refresh_token: need("refresh_token")?,
            },
            Some("service_account") => Grant::ServiceAccount {
                client_email: need("client_email")?,
                key_id: field("private_key_id"),
                key: Box::new(rsa_key(&need("private_key")?)?),
            },
            Some(other) => return Err(CredentialsError::UnsupportedType { kind: other.to_string() }),
            None => return Err(CredentialsError::Missing { field: "type" }),
        };
        Ok(TokenSource { grant, token_uri, cached: tokio::sync::Mutex::new(None) })
    }

    /// An access token valid for at least a minute at `now`, from the
    /// cache or fetched with `http`.
    pub async fn token(&self, http: &reqwest::Client, now: SystemTime) -> Result<String, ApiError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref() {
            if now + REFRESH_MARGIN < *expires {
                return Ok(token.clone());
            }
        }
        let (token, lifetime) = self.fetch(http, now).await?;
        *cached = Some((token.clone(), now + lifetime));
        Ok(token)
    }

    async fn fetch(&self, http: &reqwest::Client, now: SystemTime) -> Result<(String, Duration), ApiError> {
        let form: Vec<(&str, String)> = match &self.grant {
            Grant::RefreshToken { client_id, client_secret, refresh_token } => vec![
                ("grant_type", "refresh_token".into()),
                ("client_id", client_id.clone()),
                ("client_secret", client_secret.clone()),
                ("refresh_token", refresh_token.clone()),
            ],
            Grant::ServiceAccount { client_email, key_id, key } => vec![
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()),
                ("assertion", self.assertion(client_email, key_id.as_deref(), key, now)?),
            ],
        };
        let body = form.iter().map(|(k, v)| format!("{k}={}", form_encode(v))).collect::<Vec<_>>().join("&");
        let failed =
            |why: String| ApiError::BadGateway(format!("vertex_ai: no access token from {}: {why}", self.token_uri));
        let resp = http
            .post(&self.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .timeout(TOKEN_TIMEOUT)
            .send()
            .await
            .map_err(|e| failed(if e.is_timeout() { "timed out".into() } else { "the request failed".into() }))?;
        let status = resp.status().as_u16();
        let bytes = crate::gateway::upstream::read_prefix(resp, 64 * 1024).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !(200..300).contains(&status) {
            // RFC 6749's error code is safe to show; its description may
            // echo a parameter, so it is not.
            let code = v.get("error").and_then(Value::as_str).unwrap_or("no error code");
            return Err(failed(format!("the token endpoint answered {status} ({code})")));
        }
        let token = v.get("access_token").and_then(Value::as_str).filter(|t| !t.is_empty());
        let token = token.ok_or_else(|| failed("the answer has no access_token".into()))?;
        let lifetime = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        Ok((token.to_string(), Duration::from_secs(lifetime)))
    }

    /// The RS256 JWT a service account presents (RFC 7523): issued by the
    /// account, for the token endpoint, valid for an hour.
    fn assertion(
        &self,
        client_email: &str,
        key_id: Option<&str>,
        key: &ring::signature::RsaKeyPair,
        now: SystemTime,
    ) -> Result<String, ApiError> {
        let iat = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = key_id {
            header["kid"] = Value::String(kid.to_string());
        }
        let claims = serde_json::json!({
            "iss": client_email, "scope": SCOPE, "aud": self.token_uri, "iat": iat, "exp": iat + 3600,
        });
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| ApiError::Internal("vertex_ai: signing the service account's JWT failed".into()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// A PEM `PRIVATE KEY` (PKCS#8, as Google's key files hold it) as an RSA
/// signing key.
fn rsa_key(pem: &str) -> Result<ring::signature::RsaKeyPair, CredentialsError> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| CredentialsError::NotPem)?;
    ring::signature::RsaKeyPair::from_pkcs8(&der).map_err(|e| CredentialsError::NotRsa { reason: e.to_string() })
}

/// `application/x-www-form-urlencoded` value encoding.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_kinds_and_refuses_others_clearly() {
        let user = r#"{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r", "token_uri": "http://127.0.0.1:1/token"}"#;
        let src = TokenSource::from_json(user).expect("authorized_user");
        assert_eq!(src.token_uri, "http://127.0.0.1:1/token");
        let missing =
            TokenSource::from_json(r#"{"type": "authorized_user", "client_id": "c"}"#).unwrap_err().to_string();
        assert!(missing.contains("client_secret"), "{missing}");
        let other = TokenSource::from_json(r#"{"type": "external_account"}"#).unwrap_err().to_string();
        assert!(other.contains("external_account"), "{other}");
        let bad_key = TokenSource::from_json(
            r#"{"type": "service_account", "client_email": "a@b", "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(bad_key.contains("private_key"), "{bad_key}");
        assert!(!format!("{src:?}").contains("\"s\""));
    }

    fn user(token_uri: &str) -> TokenSource {
        TokenSource::from_json(&format!(
            r#"{{"type": "authorized_user", "client_id": "cid", "client_secret": "very-secret-value", "refresh_token": "refresh-value", "token_uri": "{token_uri}"}}"#
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn tokens_are_cached_until_a_minute_before_expiry_and_failures_name_no_secret() {
        use wiremock::matchers::{body_string_contains, method, path};
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .and(body_string_contains("grant_type=refresh_token"))
            .and(body_string_contains("client_secret=very-secret-value"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"access_token": "tok-1", "expires_in": 3600})),
            )
            .mount(&server)
            .await;
        let src = user(&format!("{}/token", server.uri()));
        let http = reqwest::Client::new();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(src.token(&http, t0).await.unwrap(), "tok-1");
        assert_eq!(src.token(&http, t0 + Duration::from_secs(3500)).await.unwrap(), "tok-1");
        assert_eq!(server.received_requests().await.unwrap().len(), 1, "cached");
        src.token(&http, t0 + Duration::from_secs(3560)).await.unwrap();
        assert_eq!(server.received_requests().await.unwrap().len(), 2, "refreshed a minute before expiry");

        let refusing = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(400).set_body_json(
                    serde_json::json!({"error": "invalid_grant", "error_description": "Bad refresh-value"}),
                ),
            )
            .mount(&refusing)
            .await;
        let err = user(&format!("{}/token", refusing.uri())).token(&http, t0).await.unwrap_err().to_string();
        assert!(err.contains("invalid_grant") && err.contains("400"), "{err}");
        assert!(!err.contains("refresh-value") && !err.contains("very-secret"), "{err}");
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(form_encode("a b/c=d&e"), "a+b%2Fc%3Dd%26e");
    }
}
