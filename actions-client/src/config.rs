//! Parsing of the configuration URL and the GitHub API base
//! (docs/architecture.md#configuration-url-and-api-base).

use std::fmt;

use url::Url;

use crate::error::{Error, Result};

/// Environment variable that forces GHES URL rules for every host.
pub const FORCE_GHES_ENV: &str = "GITHUB_ACTIONS_FORCE_GHES";

/// What a configuration URL points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `https://github.com/{org}/{repo}`
    Repository {
        /// Owner (organization or user).
        owner: String,
        /// Repository name.
        repository: String,
    },
    /// `https://github.com/{org}`
    Organization {
        /// Organization login.
        organization: String,
    },
    /// `https://github.com/enterprises/{enterprise}`
    Enterprise {
        /// Enterprise slug.
        enterprise: String,
    },
}

impl Scope {
    /// Path of the registration-token endpoint for this scope
    /// (docs/architecture.md#credential-exchange).
    pub fn registration_token_path(&self) -> String {
        format!("{}/registration-token", self.runners_path())
    }

    /// Path of the scope's self-hosted runners (GitHub REST, `/…/actions/runners`).
    pub fn runners_path(&self) -> String {
        match self {
            Scope::Repository { owner, repository } => {
                format!("/repos/{owner}/{repository}/actions/runners")
            }
            Scope::Organization { organization } => {
                format!("/orgs/{organization}/actions/runners")
            }
            Scope::Enterprise { enterprise } => {
                format!("/enterprises/{enterprise}/actions/runners")
            }
        }
    }
}

/// A parsed configuration URL (`githubConfigUrl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitHubConfig {
    config_url: String,
    scope: Scope,
    hosted: bool,
    api_base: String,
}

impl GitHubConfig {
    /// Parses `url` with the current environment (`GITHUB_ACTIONS_FORCE_GHES`).
    pub fn parse(url: &str) -> Result<Self> {
        Self::parse_with(url, std::env::var_os(FORCE_GHES_ENV).is_some())
    }

    /// Parses `url`; `force_ghes` treats every host as GitHub Enterprise Server.
    pub fn parse_with(url: &str, force_ghes: bool) -> Result<Self> {
        let invalid = |reason: &str| Error::config("config URL", url, reason.to_owned());
        let trimmed = url.trim_matches('/');
        if trimmed.is_empty() {
            return Err(invalid(
                "empty; set it to https://github.com/<org>, https://github.com/<org>/<repo> or https://github.com/enterprises/<enterprise>",
            ));
        }
        let parsed = Url::parse(trimmed).map_err(|e| {
            invalid(&format!(
                "not a URL ({e}); write it as https://<host>/<org>[/<repo>] or https://<host>/enterprises/<enterprise>"
            ))
        })?;
        let host = parsed
            .host_str()
            .ok_or_else(|| invalid("has no host; write it as https://<host>/<org>[/<repo>]"))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(invalid("scheme must be http or https"));
        }
        let host_port = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let scope = parse_scope(&parsed).ok_or_else(|| {
            invalid("invalid config URL, should point to an enterprise, org, or repository")
        })?;
        let hosted = !force_ghes && is_hosted(&host_port);
        let scheme = parsed.scheme();
        let api_base = if !hosted {
            format!("{scheme}://{host_port}/api/v3")
        } else if host_port.eq_ignore_ascii_case("www.github.com") {
            format!("{scheme}://api.github.com")
        } else {
            format!("{scheme}://api.{host_port}")
        };
        Ok(Self {
            config_url: parsed.to_string(),
            scope,
            hosted,
            api_base,
        })
    }

    /// The URL as sent in the runner-registration body (docs/architecture.md#credential-exchange).
    pub fn config_url(&self) -> &str {
        &self.config_url
    }

    /// Repository, organization or enterprise.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// github.com, `*.ghe.com` or `github.localhost` (as opposed to GHES).
    pub fn is_hosted(&self) -> bool {
        self.hosted
    }

    /// The GitHub REST API base `B` without a trailing slash
    /// (docs/architecture.md#configuration-url-and-api-base).
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// `B` + the registration-token path of the scope.
    pub fn registration_token_url(&self) -> String {
        format!("{}{}", self.api_base, self.scope.registration_token_path())
    }
}

impl fmt::Display for GitHubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.config_url)
    }
}

fn is_hosted(host_port: &str) -> bool {
    ["github.com", "www.github.com", "github.localhost"]
        .iter()
        .any(|h| host_port.eq_ignore_ascii_case(h))
        || host_port.ends_with(".ghe.com")
}

fn parse_scope(url: &Url) -> Option<Scope> {
    let path = url.path().trim_matches('/');
    if path.is_empty() {
        return None;
    }
    let segments: Vec<&str> = path.split('/').collect();
    match segments.as_slice() {
        [org] if !org.is_empty() => Some(Scope::Organization {
            organization: decode(org),
        }),
        [first, enterprise] if first.eq_ignore_ascii_case("enterprises") => {
            non_empty(enterprise).map(|e| Scope::Enterprise { enterprise: e })
        }
        [owner, repository] => Some(Scope::Repository {
            owner: non_empty(owner)?,
            repository: non_empty(repository)?,
        }),
        _ => None,
    }
}

fn non_empty(segment: &str) -> Option<String> {
    (!segment.is_empty()).then(|| decode(segment))
}

fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| segment.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reg(url: &str) -> String {
        GitHubConfig::parse_with(url, false)
            .unwrap()
            .registration_token_url()
    }

    #[test]
    fn spec_examples() {
        assert_eq!(
            reg("https://github.com/octo-org/app"),
            "https://api.github.com/repos/octo-org/app/actions/runners/registration-token"
        );
        assert_eq!(
            reg("https://github.com/octo-org/app/"),
            reg("https://github.com/octo-org/app")
        );
        assert_eq!(
            reg("https://github.com/octo-org"),
            "https://api.github.com/orgs/octo-org/actions/runners/registration-token"
        );
        assert_eq!(
            reg("https://www.github.com/octo-org/"),
            "https://api.github.com/orgs/octo-org/actions/runners/registration-token"
        );
        assert_eq!(
            reg("https://github.com/enterprises/acme"),
            "https://api.github.com/enterprises/acme/actions/runners/registration-token"
        );
        assert_eq!(
            reg("https://acme.ghe.com/octo-org"),
            "https://api.acme.ghe.com/orgs/octo-org/actions/runners/registration-token"
        );
        assert_eq!(
            reg("http://github.localhost/octo-org/app"),
            "http://api.github.localhost/repos/octo-org/app/actions/runners/registration-token"
        );
        assert_eq!(
            reg("https://ghes.example.com/octo-org/app"),
            "https://ghes.example.com/api/v3/repos/octo-org/app/actions/runners/registration-token"
        );
        assert_eq!(
            reg("https://ghes.example.com:8443/enterprises/acme"),
            "https://ghes.example.com:8443/api/v3/enterprises/acme/actions/runners/registration-token"
        );
        let forced = GitHubConfig::parse_with("https://acme.ghe.com/octo-org", true).unwrap();
        assert!(!forced.is_hosted());
        assert_eq!(
            forced.registration_token_url(),
            "https://acme.ghe.com/api/v3/orgs/octo-org/actions/runners/registration-token"
        );
    }

    #[test]
    fn quirks() {
        let c = GitHubConfig::parse_with("https://github.com:443/octo-org", false).unwrap();
        // `Url` drops the default port, so this is hosted (Go keeps it and is not).
        assert!(c.is_hosted());
        let c = GitHubConfig::parse_with("https://GitHub.com/enterprises", false).unwrap();
        assert_eq!(
            c.scope(),
            &Scope::Organization {
                organization: "enterprises".into()
            }
        );
        // Hosts are normalized to lower case, so `.GHE.com` is hosted too (Go: not hosted).
        let c = GitHubConfig::parse_with("https://x.GHE.com/o", false).unwrap();
        assert!(c.is_hosted());
        assert_eq!(c.api_base(), "https://api.x.ghe.com");
        let c = GitHubConfig::parse_with("https://github.com/ENTERPRISES/acme//", false).unwrap();
        assert_eq!(
            c.scope(),
            &Scope::Enterprise {
                enterprise: "acme".into()
            }
        );
        assert_eq!(c.config_url(), "https://github.com/ENTERPRISES/acme");
    }

    #[test]
    fn invalid_urls_name_the_value() {
        for bad in [
            "https://github.com",
            "https://github.com/",
            "https://github.com/a/b/c",
            "https://github.com/a//b",
            "",
            "not a url",
            "ftp://github.com/a",
        ] {
            let err = GitHubConfig::parse_with(bad, false).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("config URL"), "{text}");
            assert!(text.contains(&format!("{bad:?}")), "{text}");
        }
        let text = GitHubConfig::parse_with("https://github.com/a/b/c", false)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("should point to an enterprise, org, or repository"),
            "{text}"
        );
    }
}
