//! Our CRDs next to ARC 0.14.2's, structurally: no field is required that ARC leaves optional,
//! and every list, map and format marker of ARC's is ours too. ARC's side is a digest of facts
//! (`tests/suites/data/arc-0.14.2/crd-facts.tsv`, made by `xtask/scripts/arc-facts.py crd`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_reconcilers::crd;
use serde_json::Value;

/// `(kind, path, fact)` to the fact's value, as `arc-facts.py` writes them.
type Facts = BTreeMap<(String, String, String), String>;

fn arc_facts() -> Facts {
    let path = suites::helm::workspace_root().join("tests/suites/data/arc-0.14.2/crd-facts.tsv");
    let text = std::fs::read_to_string(&path).expect("ARC's CRD facts");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{}: bad line {l:?}", path.display());
            ((f[0].into(), f[1].into(), f[2].into()), f[3].into())
        })
        .collect()
}

/// The same facts of our CRDs (the walk of `arc-facts.py`, over `crd::all()`).
fn our_facts() -> Facts {
    fn walk(kind: &str, path: &str, schema: &Value, out: &mut Facts) {
        let mut put = |fact: &str, value: String| {
            out.insert((kind.into(), path.into(), fact.into()), value);
        };
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        if let Some(required) = schema.get("required") {
            let mut names = strings(required);
            names.sort();
            put("required", names.join(","));
        }
        for (key, name) in [
            ("x-kubernetes-list-type", "list-type"),
            ("x-kubernetes-map-type", "map-type"),
            ("format", "format"),
        ] {
            if let Some(v) = schema.get(key).and_then(Value::as_str) {
                put(name, v.to_owned());
            }
        }
        if let Some(keys) = schema.get("x-kubernetes-list-map-keys") {
            put("list-map-keys", strings(keys).join(","));
        }
        for (name, sub) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            walk(kind, &child, sub, out);
        }
        if let Some(items) = schema.get("items").filter(|i| i.is_object()) {
            walk(kind, &format!("{path}[]"), items, out);
        }
        if let Some(values) = schema.get("additionalProperties").filter(|i| i.is_object()) {
            walk(kind, &format!("{path}{{}}"), values, out);
        }
    }
    let mut out = Facts::new();
    for def in crd::all() {
        let kind = def.spec.names.kind.clone();
        for version in &def.spec.versions {
            let schema = serde_json::to_value(&version.schema).expect("json");
            walk(&kind, "", &schema["openAPIV3Schema"], &mut out);
        }
    }
    out
}

/// Required fields of ours at paths ARC's schemas do not have, and why they may stay.
fn beyond_arc(path: &str) -> bool {
    // Kubernetes requires these in any owner reference; ARC's embedded metadata has none.
    path.ends_with("metadata.ownerReferences[]")
        // A Kubernetes 1.37 pod field (name and priority are its keys); ARC's schema predates it.
        || path.ends_with("spec.evictionResponders[]")
        // arc-rs's own status conditions, written only by the controllers (metav1.Condition).
        || path == "status.conditions[]"
}

#[test]
fn no_field_is_required_that_arc_leaves_optional() {
    let arc = arc_facts();
    let ours = our_facts();
    let mut stricter = Vec::new();
    for ((kind, path, fact), value) in &ours {
        if fact != "required" || beyond_arc(path) {
            continue;
        }
        let theirs: BTreeSet<&str> = arc
            .get(&(kind.clone(), path.clone(), fact.clone()))
            .map(|v| v.split(',').collect())
            .unwrap_or_default();
        let extra: Vec<&str> = value.split(',').filter(|r| !theirs.contains(r)).collect();
        if !extra.is_empty() {
            stricter.push(format!("{kind} {path}: {extra:?}"));
        }
    }
    assert!(
        stricter.is_empty(),
        "our CRDs require what ARC's do not:\n{}",
        stricter.join("\n")
    );
}

#[test]
fn every_marker_and_format_of_arc_is_ours() {
    let arc = arc_facts();
    let ours = our_facts();
    let missing: Vec<String> = arc
        .iter()
        .filter(|((_, _, fact), _)| fact != "required")
        .filter(|(key, value)| ours.get(*key) != Some(*value))
        .map(|((kind, path, fact), value)| {
            format!(
                "{kind} {path}: ARC {fact}={value}, ours {:?}",
                ours.get(&(kind.clone(), path.clone(), fact.clone()))
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} of ARC's markers differ:\n{}",
        missing.len(),
        missing.join("\n")
    );
    // Spot checks that the digest is what the tests think it is.
    for (kind, path, fact, value) in [
        (
            "EphemeralRunner",
            "status.failures{}",
            "format",
            "date-time",
        ),
        (
            "AutoscalingRunnerSet",
            "spec.template.spec.containers",
            "list-map-keys",
            "name",
        ),
        (
            "EphemeralRunnerSet",
            "spec.ephemeralRunnerSpec.spec.containers[].envFrom[].secretRef",
            "map-type",
            "atomic",
        ),
    ] {
        let key = (kind.to_owned(), path.to_owned(), fact.to_owned());
        assert_eq!(arc.get(&key).map(String::as_str), Some(value), "{key:?}");
    }
}

#[test]
fn spec_is_optional_as_in_arc() {
    for def in crd::all() {
        let schema = serde_json::to_value(&def.spec.versions[0].schema).expect("json");
        let root = &schema["openAPIV3Schema"];
        let required = root["required"].as_array().cloned().unwrap_or_default();
        assert!(
            !required.iter().any(|r| r == "spec"),
            "{}: spec must not be required",
            def.spec.names.kind
        );
        assert_eq!(
            root["properties"]["spec"]["default"],
            serde_json::json!({}),
            "{}: an object sent without spec is stored with an empty one",
            def.spec.names.kind
        );
    }
}
