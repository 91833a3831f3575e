//! Reading the admin token's `exp` claim without verifying the signature
//! (docs/architecture.md#credential-exchange).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

const KNOWN_ALGS: &[&str] = &[
    "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
    "PS256", "PS384", "PS512", "EdDSA",
];

/// The `exp` claim (seconds since the epoch) of a JWT, read without verification.
///
/// `Ok(None)` means the token is well formed but has no `exp`. The rules follow the Go parser:
/// three segments, unpadded base64url JSON, a known `alg`, numeric `exp`/`nbf`/`iat`.
pub fn unverified_exp(token: &str) -> Result<Option<i64>, String> {
    let segments: Vec<&str> = token.split('.').collect();
    let [header, claims, _signature] = segments.as_slice() else {
        return Err(format!(
            "token has {} segments, a JWT has 3",
            segments.len()
        ));
    };
    let header = decode_json(header).map_err(|e| format!("JWT header: {e}"))?;
    match header.get("alg").and_then(Value::as_str) {
        Some(alg) if KNOWN_ALGS.contains(&alg) => {}
        Some(alg) => return Err(format!("JWT header: unknown alg {alg:?}")),
        None => return Err("JWT header: no alg".to_owned()),
    }
    let claims = decode_json(claims).map_err(|e| format!("JWT claims: {e}"))?;
    let Value::Object(claims) = claims else {
        return Err("JWT claims are not a JSON object".to_owned());
    };
    for name in ["nbf", "iat"] {
        if let Some(v) = claims.get(name)
            && !v.is_number()
            && !v.is_null()
        {
            return Err(format!("JWT claim {name} is not a number"));
        }
    }
    match claims.get("exp") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(|f| Some(f.floor() as i64))
            .ok_or_else(|| "JWT claim exp is not a number".to_owned()),
    }
}

fn decode_json(segment: &str) -> Result<Value, String> {
    if segment.contains('=') {
        return Err("padded base64 (JWTs use unpadded base64url)".to_owned());
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|e| format!("not base64url ({e})"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not JSON ({e})"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn token(header: &str, claims: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn reads_exp() {
        let t = token(
            r#"{"alg":"RS256","typ":"JWT"}"#,
            r#"{"exp":1767225960,"iat":1}"#,
        );
        assert_eq!(unverified_exp(&t), Ok(Some(1767225960)));
        let t = token(r#"{"alg":"HS256"}"#, r#"{"exp":1767225960.7}"#);
        assert_eq!(unverified_exp(&t), Ok(Some(1767225960)));
        let t = token(r#"{"alg":"none"}"#, r#"{"sub":"x"}"#);
        assert_eq!(unverified_exp(&t), Ok(None));
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert!(unverified_exp("a.b").is_err());
        let no_alg = token(r#"{"typ":"JWT"}"#, r#"{"exp":1}"#);
        assert!(unverified_exp(&no_alg).unwrap_err().contains("no alg"));
        let padded = format!(
            "{}.{}.s",
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"alg":"RS256"}"#),
            base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":12345}"#)
        );
        assert!(unverified_exp(&padded).unwrap_err().contains("padded"));
        let string_exp = token(r#"{"alg":"RS256"}"#, r#"{"exp":"1"}"#);
        assert!(unverified_exp(&string_exp).is_err());
        let array = token(r#"{"alg":"RS256"}"#, r#"[1]"#);
        assert!(unverified_exp(&array).is_err());
    }
}
