//! Label and annotation merging and the integrity hash, shared by the reconcilers so that every
//! controller computes the same values (docs/architecture.md#integrity-hash-and-merge-rules).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A label or annotation map.
pub type Map = BTreeMap<String, String>;

/// Hash of a value's canonical JSON (struct fields in declaration order, maps sorted): the
/// first 16 hex digits of its SHA-256. Used for every `actions.github.com/integrity-hash`;
/// the EphemeralRunnerSet hash is `integrity_hash(&spec.ephemeral_runner_spec)`.
pub fn integrity_hash<T: Serialize + ?Sized>(value: &T) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&json);
    hex::encode(digest)[..16].to_owned()
}

/// Merges `base` and `overwrite` (overwrite wins) and drops keys starting with any of
/// `excluded_prefixes` (the `--exclude-label-propagation-prefix` values).
pub fn merge_labels(
    base: Option<&Map>,
    overwrite: Option<&Map>,
    excluded_prefixes: &[String],
) -> Map {
    base.into_iter()
        .chain(overwrite)
        .flatten()
        .filter(|(k, _)| !excluded_prefixes.iter().any(|p| k.starts_with(p.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Merges `base` and `overwrite` (overwrite wins), without filtering.
pub fn merge_annotations(base: Option<&Map>, overwrite: Option<&Map>) -> Map {
    base.into_iter()
        .chain(overwrite)
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether every entry of `desired` is present with the same value in `actual` (the drift check
/// that tolerates foreign keys, quirk Q1 of docs/architecture.md#arc-reconciler-quirks).
pub fn contains_all(actual: Option<&Map>, desired: &Map) -> bool {
    desired
        .iter()
        .all(|(k, v)| actual.and_then(|a| a.get(k)) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> Map {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn merge_rules() {
        let base = m(&[("a", "1"), ("skip.me/x", "1"), ("b", "1")]);
        let over = m(&[("b", "2"), ("directly.excluded.org/label", "x")]);
        let merged = merge_labels(
            Some(&base),
            Some(&over),
            &["skip.me/".into(), "directly.excluded.org/label".into()],
        );
        assert_eq!(merged, m(&[("a", "1"), ("b", "2")]));
        assert_eq!(merge_annotations(Some(&base), Some(&over)).len(), 4);
        assert!(contains_all(Some(&base), &m(&[("a", "1")])));
        assert!(!contains_all(Some(&base), &m(&[("a", "2")])));
        assert!(!contains_all(None, &m(&[("a", "1")])));
    }

    #[test]
    fn hash_is_stable_and_sensitive() {
        assert_eq!(
            integrity_hash(&m(&[("a", "1")])),
            integrity_hash(&m(&[("a", "1")]))
        );
        assert_ne!(
            integrity_hash(&m(&[("a", "1")])),
            integrity_hash(&m(&[("a", "2")]))
        );
        assert_eq!(integrity_hash(&1).len(), 16);
    }
}
