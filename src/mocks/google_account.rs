//! The Google service account the Vertex AI mock knows, as Google's IAM
//! would: its client email, its key id and its public key. A scenario gives
//! the gateway under test the account's credentials file
//! (`${providers.NAME.google_credentials}`, whose `token_uri` is the mock's
//! `POST /token`); the mock verifies each JWT the gateway signs with it
//! (RS256 against the public key, issuer, audience, lifetime) before it
//! issues an access token, and refuses a bad one with Google's error.
//!
//! The key (`defaults/google_test_service_account.pem`) is a throwaway
//! generated for these tests with `openssl genpkey -algorithm RSA`: it
//! belongs to no Google project and grants nothing anywhere.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

const PRIVATE_KEY_PEM: &str = include_str!("defaults/google_test_service_account.pem");
pub(crate) const CLIENT_EMAIL: &str = "postmortem-test@test-project.iam.gserviceaccount.com";
const KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";

/// The credentials file a user would download for this account, with its
/// `token_uri` at the mock at `base_url`.
pub(crate) fn credentials_json(base_url: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": KEY_ID,
        "private_key": PRIVATE_KEY_PEM,
        "client_email": CLIENT_EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{base_url}/token"),
    })
    .to_string()
}

/// The account's public key (DER `RSAPublicKey`), from the key file.
fn public_key() -> Option<Vec<u8>> {
    let b64: String = PRIVATE_KEY_PEM.lines().filter(|l| !l.starts_with("-----")).map(str::trim).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).ok()?;
    Some(ring::signature::KeyPair::public_key(&pair).as_ref().to_vec())
}

/// Why Google would refuse this assertion (RFC 7523), in its words, or
/// `None` when it would issue a token for it.
pub(crate) fn assertion_problem(jwt: &str) -> Option<&'static str> {
    const BAD_SIGNATURE: &str = "Invalid JWT Signature.";
    const BAD_TIME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else { return Some(BAD_SIGNATURE) };
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).ok();
    let json = |p: &str| decode(p).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let (Some(header), Some(claims), Some(signature)) = (json(header), json(claims), decode(signature)) else {
        return Some(BAD_SIGNATURE);
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Some(BAD_SIGNATURE);
    }
    let signed = &jwt[..jwt.rfind('.').unwrap_or(0)];
    let key = public_key()?;
    let verifier = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, key);
    if verifier.verify(signed.as_bytes(), &signature).is_err() {
        return Some(BAD_SIGNATURE);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(CLIENT_EMAIL) {
        return Some("invalid_client");
    }
    let aud_ok = claims.get("aud").and_then(Value::as_str).is_some_and(|a| a.ends_with("/token"));
    let (iat, exp) = (claims.get("iat").and_then(Value::as_i64), claims.get("exp").and_then(Value::as_i64));
    let time_ok = matches!((iat, exp), (Some(i), Some(e)) if e > i && e - i <= 3600);
    if !aud_ok || !time_ok {
        return Some(BAD_TIME);
    }
    // A scope (or a target audience) says what the token is for.
    if claims.get("scope").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Some("Invalid OAuth scope or ID token audience provided.");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(claims: Value) -> String {
        let b64: String = PRIVATE_KEY_PEM.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), input.as_bytes(), &mut sig)
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    #[test]
    fn verifies_like_google() {
        let good = json!({"iss": CLIENT_EMAIL, "aud": "http://x/token", "scope": "s", "iat": 100, "exp": 3700});
        assert_eq!(assertion_problem(&sign(good.clone())), None);
        let mut tampered = sign(good.clone());
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert_eq!(assertion_problem(&tampered), Some("Invalid JWT Signature."));
        let long = json!({"iss": CLIENT_EMAIL, "aud": "http://x/token", "scope": "s", "iat": 100, "exp": 9000});
        assert!(assertion_problem(&sign(long)).unwrap().contains("short-lived"));
        let other = json!({"iss": "someone@else", "aud": "http://x/token", "scope": "s", "iat": 100, "exp": 3700});
        assert_eq!(assertion_problem(&sign(other)), Some("invalid_client"));
        assert!(assertion_problem("a.b").is_some());
    }

    #[test]
    fn the_credentials_file_points_at_the_mock() {
        let v: Value = serde_json::from_str(&credentials_json("http://127.0.0.1:9")).unwrap();
        assert_eq!(v["token_uri"], "http://127.0.0.1:9/token");
        assert!(v["private_key"].as_str().unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}
