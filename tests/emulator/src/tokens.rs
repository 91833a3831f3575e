//! Token minting and verification: App JWTs (RS256), admin JWTs (HS256, emulator key), opaque tokens.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::{AdminTokenStyle, AppConfig};

/// Claims of admin tokens the emulator issues.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdminClaims {
    /// Issuer.
    pub iss: String,
    /// Audience (scope description).
    pub aud: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Not before (seconds).
    pub nbf: i64,
    /// Expiry (seconds); absent only with [`AdminTokenStyle::WithoutExp`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Revocation generation; tokens below the current generation are rejected.
    pub generation: u64,
}

/// A random opaque token with a GitHub-like prefix.
pub fn opaque(prefix: &str) -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    format!("{prefix}{}", hex_upper(&bytes))
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A fresh random HMAC key.
pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill(&mut key);
    key
}

/// Mints an admin JWT (HS256 with the emulator key) in the configured shape.
pub fn mint_admin(
    key: &[u8],
    claims: &AdminClaims,
    style: AdminTokenStyle,
) -> anyhow::Result<String> {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".to_owned());
    let standard = jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key))?;
    Ok(match style {
        AdminTokenStyle::Standard | AdminTokenStyle::WithoutExp => standard,
        AdminTokenStyle::PaddedBase64 => {
            let padded = |b64: &str| {
                let mut s = b64.to_owned();
                while !s.len().is_multiple_of(4) {
                    s.push('=');
                }
                s
            };
            standard
                .split('.')
                .map(padded)
                .collect::<Vec<_>>()
                .join(".")
        }
        AdminTokenStyle::WithoutAlg => {
            let mut parts = standard.split('.').map(str::to_owned).collect::<Vec<_>>();
            if let Some(h) = parts.first_mut() {
                *h = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT"}"#);
            }
            parts.join(".")
        }
    })
}

#[derive(Debug, Deserialize)]
struct AppClaims {
    iss: serde_json::Value,
    iat: Option<serde_json::Value>,
    exp: Option<serde_json::Value>,
}

/// Verifies a GitHub App JWT against the configured apps. Returns the matching app and an error
/// message in GitHub's words when it is refused.
pub fn verify_app_jwt<'a>(
    apps: &'a [AppConfig],
    token: &str,
    now: i64,
    clock_skew: i64,
    max_lifetime: i64,
) -> Result<&'a AppConfig, String> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| "A JSON web token could not be decoded".to_owned())?;
    if header.alg != Algorithm::RS256 {
        return Err("A JSON web token could not be decoded".to_owned());
    }
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice::<AppClaims>(&b).ok())
        .ok_or_else(|| "A JSON web token could not be decoded".to_owned())?;
    let iss = match &payload.iss {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err("'Issuer' claim ('iss') must be an Integer or String".to_owned()),
    };
    let app = apps
        .iter()
        .find(|a| a.app_id.to_string() == iss || a.client_id.as_deref() == Some(iss.as_str()))
        .ok_or_else(|| format!("Integration not found for issuer {iss:?}"))?;
    let iat = payload.iat.as_ref().and_then(serde_json::Value::as_i64).ok_or_else(|| {
        "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
            .to_owned()
    })?;
    let exp = payload.exp.as_ref().and_then(serde_json::Value::as_i64).ok_or_else(|| {
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
            .to_owned()
    })?;
    let key = DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes())
        .map_err(|_| "A JSON web token could not be decoded".to_owned())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map_err(|_| "A JSON web token could not be decoded".to_owned())?;
    if iat > now.saturating_add(clock_skew) {
        return Err("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued".to_owned());
    }
    if exp <= now {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires".to_owned());
    }
    if exp.saturating_sub(iat) > max_lifetime {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_owned());
    }
    Ok(app)
}
