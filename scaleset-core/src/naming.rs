//! Names, hashes and label values (docs/architecture.md#names-and-hashes).
//!
//! The listener name hash is ARC's exactly, so that an existing installation keeps its
//! listener names:
//!
//! ```
//! use scaleset_core::naming::{listener_name, short_hash};
//! assert_eq!(short_hash("arc-runners@@https://github.com/org/repo"), "7f984dc6");
//! assert_eq!(
//!     listener_name("arc", "arc-runners", "", "https://github.com/org/repo"),
//!     "arc-7f984dc6-listener"
//! );
//! ```

use serde::{Deserialize, Serialize};

/// Maximum length of a label value and of most object names used as DNS labels.
pub const MAX_LABEL_VALUE: usize = 63;

/// Maximum length of an object name (DNS subdomain).
pub const MAX_NAME: usize = 253;

/// 32-bit FNV-1a.
///
/// ```
/// assert_eq!(scaleset_core::naming::fnv1a32(b"arc-runners@@https://github.com/org/repo"), 3954087200);
/// ```
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Kubernetes "safe encoding": every byte mapped into `bcdfghjklmnpqrstvwxz2456789`.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8; 27] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// ARC's `h8`: FNV-1a of the input, in decimal, safe-encoded, first 8 characters.
pub fn short_hash(input: &str) -> String {
    let mut encoded = safe_encode(&fnv1a32(input.as_bytes()).to_string());
    encoded.truncate(8);
    encoded
}

/// `<ARS name>-<h8(namespace@runnerGroup@githubConfigUrl)>-listener`; inputs used verbatim.
pub fn listener_name(
    ars_name: &str,
    ars_namespace: &str,
    runner_group: &str,
    config_url: &str,
) -> String {
    let hash = short_hash(&format!("{ars_namespace}@{runner_group}@{config_url}"));
    format!("{ars_name}-{hash}-listener")
}

/// `<listener>-config`.
pub fn listener_config_secret_name(listener: &str) -> String {
    format!("{listener}-config")
}

/// `<listener>-proxy`.
pub fn listener_proxy_secret_name(listener: &str) -> String {
    format!("{listener}-proxy")
}

/// `<ERS name>-<h8(namespace)>-runner-proxy`.
///
/// ```
/// use scaleset_core::naming::{runner_proxy_secret_name, short_hash};
/// assert_eq!(runner_proxy_secret_name("arc", "ns"), format!("arc-{}-runner-proxy", short_hash("ns")));
/// ```
pub fn runner_proxy_secret_name(ers_name: &str, namespace: &str) -> String {
    format!("{ers_name}-{}-runner-proxy", short_hash(namespace))
}

/// `generateName` of the runners of a set: `<ERS name>-runner-`.
pub fn runner_generate_name(ers_name: &str) -> String {
    format!("{ers_name}-runner-")
}

/// Longest ARS name whose derived names fit (the chart's limit, and ARC's: a longer name makes
/// the listener name, `<ars>-<h8>-listener`, longer than the 63 characters of the label value it
/// is also written to). The CRD refuses longer names at admission; this check covers objects
/// stored before that rule.
pub const MAX_ARS_NAME: usize = 45;

/// Checks an ARS name: a DNS-1123 subdomain (what the API server accepts) of at most
/// [`MAX_ARS_NAME`] characters. When it passes, every name and label value derived from it is
/// valid (the property test below checks them all); the error names the value and the fix.
///
/// ```
/// use scaleset_core::naming::check_ars_name;
/// assert!(check_ars_name("arc-runners").is_ok());
/// let e = check_ars_name(&"a".repeat(213)).unwrap_err();
/// assert!(e.to_string().contains("at most 45"));
/// ```
pub fn check_ars_name(name: &str) -> Result<(), NameError> {
    if !is_dns1123_subdomain(name) {
        return Err(NameError::NotDns {
            name: name.to_string(),
        });
    }
    if name.len() > MAX_ARS_NAME {
        return Err(NameError::TooLong {
            name: name.to_string(),
            len: name.len(),
            max: MAX_ARS_NAME,
        });
    }
    Ok(())
}

/// A name that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Too long for the names derived from it.
    #[error(
        "AutoscalingRunnerSet name {name:?} has {len} characters; derived listener and runner names need it to be at most {max}: choose a shorter name"
    )]
    TooLong {
        /// The name.
        name: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not an object name at all.
    #[error(
        "AutoscalingRunnerSet name {name:?} is not a DNS-1123 subdomain: choose a name of at most 45 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
    )]
    NotDns {
        /// The name.
        name: String,
    },
}

/// DNS-1123 subdomain (the syntax of most object names): at most 253 characters of lower-case
/// ASCII letters, digits, `-` and `.`, in dot-separated parts that start and end with a letter or
/// digit.
///
/// ```
/// use scaleset_core::naming::is_dns1123_subdomain;
/// assert!(is_dns1123_subdomain("arc.runners-1"));
/// assert!(!is_dns1123_subdomain("arc..runners"));
/// assert!(!is_dns1123_subdomain("Arc"));
/// ```
pub fn is_dns1123_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.split('.').all(is_dns1123_part)
}

fn is_dns1123_part(part: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    part.chars().next().is_some_and(alnum)
        && part.chars().last().is_some_and(alnum)
        && part.chars().all(|c| alnum(c) || c == '-')
}

/// ARC's treatment of URL-derived label values (docs/architecture.md#label-values-from-the-url):
/// longer than 63 → first 58 characters plus `-trim`; otherwise leading and trailing `-`, `_`, `.`
/// stripped.
///
/// ```
/// use scaleset_core::naming::trim_label_value;
/// assert_eq!(trim_label_value("-my.org_"), "my.org");
/// let long = "a".repeat(64);
/// assert_eq!(trim_label_value(&long), format!("{}-trim", "a".repeat(58)));
/// ```
pub fn trim_label_value(value: &str) -> String {
    if value.len() > MAX_LABEL_VALUE {
        let mut cut = 58;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        // ARC's value, except that it may not start with `-`, `_` or `.` (ARC's would be invalid).
        let head = value[..cut].trim_start_matches(['-', '_', '.']);
        return format!("{head}-trim");
    }
    value
        .trim_matches(|c| c == '-' || c == '_' || c == '.')
        .to_string()
}

/// Kubernetes label-value syntax: empty, or ≤ 63 of `[A-Za-z0-9-_.]`, alphanumeric at both ends.
pub fn is_valid_label_value(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    value.len() <= MAX_LABEL_VALUE
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && ends_ok(value.chars().next())
        && ends_ok(value.chars().last())
}

/// What a GitHub config URL points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// `…/enterprises/<enterprise>`.
    Enterprise(String),
    /// `…/<org>`.
    Organization(String),
    /// `…/<org>/<repo>`.
    Repository {
        /// Owner.
        organization: String,
        /// Repository.
        repository: String,
    },
}

/// A parsed `githubConfigUrl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigUrl {
    /// Host (with port, if any).
    pub host: String,
    /// Scope from the path.
    pub scope: Scope,
}

/// `url` without the `user:password@` part of its authority, for messages: a URL may carry a
/// credential, and no log line, Event or status may.
///
/// ```
/// use scaleset_core::naming::without_userinfo;
/// assert_eq!(without_userinfo("https://x:ghp_secret@github.com/org"), "https://github.com/org");
/// assert_eq!(without_userinfo("https://github.com/org/a@b"), "https://github.com/org/a@b");
/// assert_eq!(without_userinfo("ghp_x@host/org"), "host/org");
/// ```
pub fn without_userinfo(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest.to_string(),
    }
}

/// A `githubConfigUrl` that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "githubConfigUrl {url:?} is invalid: {reason}; use https://<host>/<org>, https://<host>/<org>/<repo> or https://<host>/enterprises/<enterprise>"
)]
pub struct ConfigUrlError {
    /// The URL, without user information ([`without_userinfo`]).
    pub url: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl ConfigUrl {
    /// Parses as ARC does (docs/architecture.md#configuration-url-and-api-base).
    ///
    /// ```
    /// use scaleset_core::naming::{ConfigUrl, Scope};
    /// let u = ConfigUrl::parse("https://github.com/enterprises/ent/")?;
    /// assert_eq!(u.scope, Scope::Enterprise("ent".into()));
    /// assert!(u.is_hosted());
    /// assert!(ConfigUrl::parse("https://github.com/a/b/c").is_err());
    /// # Ok::<(), scaleset_core::naming::ConfigUrlError>(())
    /// ```
    pub fn parse(url: &str) -> Result<Self, ConfigUrlError> {
        let err = |reason| ConfigUrlError {
            url: without_userinfo(url),
            reason,
        };
        let trimmed = url.trim().trim_matches('/');
        let (scheme, rest) = trimmed
            .split_once("://")
            .ok_or_else(|| err("missing scheme"))?;
        if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
            return Err(err("scheme must be http or https"));
        }
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() {
            return Err(err("missing host"));
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // GitHub's enterprise, organization and repository names use only these characters;
        // they also become label values.
        if parts.iter().any(|p| {
            !p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        }) {
            return Err(err(
                "an enterprise, organization or repository name may only contain letters, digits, '-', '_' and '.'",
            ));
        }
        let scope = match parts.as_slice() {
            [org] if !org.is_empty() => Scope::Organization((*org).to_string()),
            [first, ent] if first.eq_ignore_ascii_case("enterprises") && !ent.is_empty() => {
                Scope::Enterprise((*ent).to_string())
            }
            [org, repo] if !org.is_empty() && !repo.is_empty() => Scope::Repository {
                organization: (*org).to_string(),
                repository: (*repo).to_string(),
            },
            _ => return Err(err("should point to an enterprise, org, or repository")),
        };
        Ok(ConfigUrl {
            host: host.to_string(),
            scope,
        })
    }

    /// github.com, www.github.com, github.localhost or `*.ghe.com` (before any
    /// `GITHUB_ACTIONS_FORCE_GHES` override, which the caller applies).
    pub fn is_hosted(&self) -> bool {
        let host = self
            .host
            .rsplit_once(':')
            .map_or(self.host.as_str(), |(h, _)| h)
            .to_ascii_lowercase();
        matches!(
            host.as_str(),
            "github.com" | "www.github.com" | "github.localhost"
        ) || host.ends_with(".ghe.com")
    }

    /// The `actions.github.com/{enterprise,organization,repository}` label values, trimmed;
    /// empty parts are left out.
    ///
    /// ```
    /// use scaleset_core::naming::ConfigUrl;
    /// let u = ConfigUrl::parse("https://github.com/org/repo")?;
    /// assert_eq!(u.labels(), vec![("organization", "org".to_string()), ("repository", "repo".to_string())]);
    /// # Ok::<(), scaleset_core::naming::ConfigUrlError>(())
    /// ```
    pub fn labels(&self) -> Vec<(&'static str, String)> {
        let raw: Vec<(&'static str, &str)> = match &self.scope {
            Scope::Enterprise(e) => vec![("enterprise", e)],
            Scope::Organization(o) => vec![("organization", o)],
            Scope::Repository {
                organization,
                repository,
            } => vec![("organization", organization), ("repository", repository)],
        };
        raw.into_iter()
            .map(|(k, v)| (k, trim_label_value(v)))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Examples verified with Go hash/fnv (docs/architecture.md#names-and-hashes).
    #[test]
    fn arc_listener_hash_examples() {
        assert_eq!(
            fnv1a32(b"default@my-group@https://github.com/enterprises/ent"),
            855384760
        );
        assert_eq!(
            short_hash("default@my-group@https://github.com/enterprises/ent"),
            "d997d8cb"
        );
        assert_eq!(safe_encode("0123456789"), "456789bcdf");
    }

    /// ARC test: a 64-character org or repo gives a 63-character value ending in `-trim`; an
    /// enterprise URL sets only the enterprise label.
    #[test]
    fn url_labels_trimmed() {
        let long = "o".repeat(64);
        let u = ConfigUrl::parse(&format!("https://github.com/{long}/{long}")).expect("url");
        for (_, v) in u.labels() {
            assert_eq!(v.len(), 63);
            assert!(v.ends_with("-trim"));
        }
        let u = ConfigUrl::parse("https://ghes.example.com/enterprises/ent").expect("url");
        assert_eq!(u.labels(), vec![("enterprise", "ent".to_string())]);
        assert!(!u.is_hosted());
    }

    #[test]
    fn url_errors_never_show_credentials() {
        let e = ConfigUrl::parse("https://u:ghp_secret@github.com/").expect_err("no org");
        assert!(!e.to_string().contains("ghp_secret"), "{e}");
        assert!(e.to_string().contains("https://github.com"), "{e}");
    }

    #[test]
    fn url_errors_name_the_fix() {
        let e = ConfigUrl::parse("github.com/org").expect_err("no scheme");
        assert!(e.to_string().contains("https://<host>/<org>"));
        assert!(ConfigUrl::parse("https://github.com").is_err());
        assert!(
            ConfigUrl::parse("https://x.ghe.com/org")
                .expect("url")
                .is_hosted()
        );
    }

    #[test]
    fn ars_name_limit() {
        assert!(check_ars_name(&"a".repeat(45)).is_ok());
        let e = check_ars_name(&"a".repeat(46)).expect_err("too long");
        assert!(e.to_string().contains("at most 45"));
        let name = listener_name(&"a".repeat(45), "ns", "g", "https://github.com/o");
        assert!(name.len() <= MAX_LABEL_VALUE);
    }

    proptest! {
        /// Any string of up to 253 characters (lower-case names with dots and dashes, and any
        /// unicode) is refused by `check_ars_name` with an error naming it and the fix, or it
        /// and every name and label value derived from it are valid.
        #[test]
        fn ars_names_are_refused_or_give_valid_names_and_labels(
            name in prop_oneof![
                "[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?",
                "[a-z0-9][a-z0-9-]{0,60}",
                "[a-z0-9][a-z0-9-]{30,50}\\.[a-z0-9]{1,5}",
                "\\PC{0,253}",
                "[a-zA-Z0-9._ü€-]{1,80}",
            ],
            namespace in "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?",
            group in "\\PC{0,20}",
        ) {
            match check_ars_name(&name) {
                Ok(()) => {
                    let url = "https://github.com/o";
                    // ERS, runner pods and JIT Secrets, proxy Secrets: object names.
                    prop_assert!(is_dns1123_subdomain(&name));
                    let runner = format!("{}abcde", runner_generate_name(&name));
                    prop_assert!(is_dns1123_subdomain(&runner), "{}", runner);
                    let proxy = runner_proxy_secret_name(&name, &namespace);
                    prop_assert!(is_dns1123_subdomain(&proxy), "{}", proxy);
                    // The listener name is also a label value.
                    let listener = listener_name(&name, &namespace, &group, url);
                    prop_assert!(is_dns1123_subdomain(&listener), "{}", listener);
                    prop_assert!(is_valid_label_value(&listener), "{}", listener);
                    for child in [listener_config_secret_name(&listener), listener_proxy_secret_name(&listener)] {
                        prop_assert!(is_dns1123_subdomain(&child), "{}", child);
                    }
                    // The scale-set-name label value.
                    prop_assert!(is_valid_label_value(&name));
                }
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(
                        name.len() > MAX_ARS_NAME || !is_dns1123_subdomain(&name),
                        "a valid name was refused: {}", message
                    );
                    prop_assert!(message.contains(&format!("{name:?}")), "{}", message);
                    prop_assert!(message.contains("choose a"), "{}", message);
                }
            }
        }

        #[test]
        fn trimmed_values_fit(s in "[a-zA-Z0-9._-]{0,100}") {
            prop_assert!(trim_label_value(&s).len() <= MAX_LABEL_VALUE);
        }

        /// Any `githubConfigUrl` path is refused with an error naming the URL and the fix, or
        /// every label value derived from it is valid.
        #[test]
        fn config_urls_are_refused_or_give_valid_labels(
            path in prop_oneof![
                "[a-zA-Z0-9._-]{1,100}(/[a-zA-Z0-9._-]{1,100})?",
                "enterprises/[a-zA-Z0-9._-]{1,100}",
                "\\PC{1,100}(/\\PC{1,40})?",
            ],
        ) {
            let url = format!("https://github.example.com/{path}");
            match ConfigUrl::parse(&url) {
                Ok(parsed) => {
                    for (key, value) in parsed.labels() {
                        prop_assert!(is_valid_label_value(&value), "{}={:?}", key, value);
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(message.contains(&format!("{:?}", without_userinfo(&url))), "{}", message);
                    prop_assert!(message.contains("https://<host>/<org>"), "{}", message);
                }
            }
        }

        #[test]
        fn short_hash_is_at_most_8_safe_chars(s in ".{0,40}") {
            let h = short_hash(&s);
            prop_assert!(h.len() <= 8 && h.chars().all(|c| "456789bcdf".contains(c)));
        }
    }
}
