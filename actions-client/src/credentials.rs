//! Credentials: a personal access token or a GitHub App (docs/architecture.md#credential-exchange).

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::error::{Error, Result};

/// How long before "now" an App JWT's `iat` is set, to absorb clock skew.
pub const APP_JWT_BACKDATE_SECS: i64 = 60;
/// `exp - iat` of an App JWT (9 minutes: now + 8 min, under GitHub's 10-minute limit).
pub const APP_JWT_LIFETIME_SECS: i64 = 9 * 60;

/// The credential the client authenticates to GitHub with.
#[derive(Clone)]
pub enum Credentials {
    /// A personal access token (`github_token`).
    Pat(SecretString),
    /// A GitHub App installation.
    App(GitHubApp),
}

impl Credentials {
    /// A PAT; it must not be empty.
    pub fn pat(token: SecretString) -> Result<Self> {
        if token.expose_secret().trim().is_empty() {
            return Err(Error::config(
                "github_token",
                "<empty>",
                "the personal access token is empty; set a PAT with the admin:org (or repo) scope",
            ));
        }
        Ok(Credentials::Pat(token))
    }

    /// A GitHub App: `app_id` is the numeric app id or the client id (`Iv1.…`).
    pub fn app(
        app_id: impl Into<String>,
        installation_id: i64,
        private_key_pem: &SecretString,
    ) -> Result<Self> {
        GitHubApp::new(app_id, installation_id, private_key_pem).map(Credentials::App)
    }

    /// `"pat"` or `"github-app"` (for logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Credentials::Pat(_) => "pat",
            Credentials::App(_) => "github-app",
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Pat(_) => f.write_str("Credentials::Pat([REDACTED])"),
            Credentials::App(app) => write!(f, "Credentials::App({app:?})"),
        }
    }
}

/// A GitHub App installation with its parsed private key.
#[derive(Clone)]
pub struct GitHubApp {
    app_id: String,
    installation_id: i64,
    key: EncodingKey,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
    exp: i64,
}

impl GitHubApp {
    /// Validates the three App fields and parses the first PEM block of the key (PKCS#1 or
    /// PKCS#8 RSA).
    pub fn new(
        app_id: impl Into<String>,
        installation_id: i64,
        private_key_pem: &SecretString,
    ) -> Result<Self> {
        let app_id = app_id.into().trim().to_owned();
        if app_id.is_empty() {
            return Err(Error::config(
                "github_app_id",
                "<empty>",
                "set the App's numeric id or its client id (Iv1.…)",
            ));
        }
        if installation_id <= 0 {
            return Err(Error::config(
                "github_app_installation_id",
                installation_id.to_string(),
                "must be the positive id of the App's installation",
            ));
        }
        let pem = first_pem_block(private_key_pem.expose_secret()).ok_or_else(|| {
            Error::config(
                "github_app_private_key",
                "<secret>",
                "no PEM block found; paste the App's private key including the BEGIN/END lines",
            )
        })?;
        if pem.contains("ENCRYPTED") {
            return Err(Error::config(
                "github_app_private_key",
                "<secret>",
                "encrypted PEM keys are not supported; use the unencrypted key GitHub generated",
            ));
        }
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
            Error::config(
                "github_app_private_key",
                "<secret>",
                format!("not an RSA private key in PKCS#1 or PKCS#8 PEM form ({e})"),
            )
        })?;
        Ok(Self {
            app_id,
            installation_id,
            key,
        })
    }

    /// App id or client id: the JWT issuer.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// Installation id.
    pub fn installation_id(&self) -> i64 {
        self.installation_id
    }

    /// An RS256 JWT with `iat = now - 60 s` and `exp = iat + 9 min`.
    pub fn jwt(&self, now_unix: i64) -> Result<SecretString> {
        let iat = now_unix - APP_JWT_BACKDATE_SECS;
        let claims = Claims {
            iss: &self.app_id,
            iat,
            exp: iat + APP_JWT_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map(SecretString::from)
            .map_err(|e| {
                Error::config(
                    "github_app_private_key",
                    "<secret>",
                    format!("signing the App JWT failed ({e})"),
                )
            })
    }
}

impl fmt::Debug for GitHubApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubApp")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .field("private_key", &"[REDACTED]")
            .finish()
    }
}

fn first_pem_block(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start..];
    let end_marker = rest.find("-----END ")?;
    let after = &rest[end_marker + "-----END ".len()..];
    let close = after.find("-----")?;
    let end = end_marker + "-----END ".len() + close + "-----".len();
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn first_block_only() {
        let text = "junk\n-----BEGIN A-----\nxx\n-----END A-----\n-----BEGIN B-----\n";
        assert_eq!(
            first_pem_block(text),
            Some("-----BEGIN A-----\nxx\n-----END A-----")
        );
        assert_eq!(first_pem_block("nothing"), None);
    }

    #[test]
    fn bad_app_fields_are_named() {
        let key =
            SecretString::from("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----");
        let err = GitHubApp::new("", 1, &key).unwrap_err().to_string();
        assert!(err.contains("github_app_id"), "{err}");
        let err = GitHubApp::new("1", 0, &key).unwrap_err().to_string();
        assert!(err.contains("github_app_installation_id"), "{err}");
        let err = GitHubApp::new("1", 1, &key).unwrap_err().to_string();
        assert!(err.contains("github_app_private_key"), "{err}");
        assert!(!err.contains("AAAA"), "{err}");
        let err = GitHubApp::new("1", 1, &SecretString::from("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM block"), "{err}");
        assert!(Credentials::pat(SecretString::from(" ")).is_err());
        let pat = Credentials::pat(SecretString::from("ghp_secret")).unwrap();
        assert!(!format!("{pat:?}").contains("ghp_secret"));
    }
}
