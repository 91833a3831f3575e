//! Config URL parsing (docs/architecture.md#configuration-url-and-api-base), used to validate
//! runner-registration bodies.

use std::fmt;

/// The scope a config URL or registration token names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `{url}/{owner}/{repo}`.
    Repository {
        /// Owner.
        owner: String,
        /// Repository.
        repo: String,
    },
    /// `{url}/{org}`.
    Organization(String),
    /// `{url}/enterprises/{enterprise}`.
    Enterprise(String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Repository { owner, repo } => write!(f, "repos/{owner}/{repo}"),
            Scope::Organization(org) => write!(f, "orgs/{org}"),
            Scope::Enterprise(ent) => write!(f, "enterprises/{ent}"),
        }
    }
}

impl Scope {
    /// Whether two scopes name the same thing (GitHub logins are case-insensitive).
    pub fn same_as(&self, other: &Scope) -> bool {
        self.to_string().eq_ignore_ascii_case(&other.to_string())
    }
}

/// Parses a config URL into its scope, following
/// docs/architecture.md#configuration-url-and-api-base (leading/trailing `/` stripped, 1 or 2 path
/// segments, `enterprises/{name}`).
pub fn parse_config_url(raw: &str) -> Result<Scope, String> {
    let invalid = || {
        format!("{raw:?}: invalid config URL, should point to an enterprise, org, or repository")
    };
    let trimmed = raw.trim_matches('/');
    let url = url::Url::parse(trimmed).map_err(|_| invalid())?;
    let path = url.path().trim_matches('/');
    if path.is_empty() {
        return Err(invalid());
    }
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        [org] => Ok(Scope::Organization((*org).to_owned())),
        [first, ent] if first.eq_ignore_ascii_case("enterprises") => {
            Ok(Scope::Enterprise((*ent).to_owned()))
        }
        [owner, repo] if !owner.is_empty() && !repo.is_empty() => Ok(Scope::Repository {
            owner: (*owner).to_owned(),
            repo: (*repo).to_owned(),
        }),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_scopes() {
        assert_eq!(
            parse_config_url("http://127.0.0.1:8080/octo-org/app/"),
            Ok(Scope::Repository {
                owner: "octo-org".into(),
                repo: "app".into()
            })
        );
        assert_eq!(
            parse_config_url("https://github.com/octo-org"),
            Ok(Scope::Organization("octo-org".into()))
        );
        assert_eq!(
            parse_config_url("https://github.com/Enterprises/acme"),
            Ok(Scope::Enterprise("acme".into()))
        );
        assert_eq!(
            parse_config_url("https://github.com/enterprises"),
            Ok(Scope::Organization("enterprises".into()))
        );
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in [
            "https://github.com",
            "https://github.com/",
            "https://github.com/a/b/c",
            "https://github.com/a//b",
            "not a url",
        ] {
            assert!(parse_config_url(bad).is_err(), "{bad} accepted");
        }
    }
}
