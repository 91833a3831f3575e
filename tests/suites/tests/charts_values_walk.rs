//! Every key of ARC 0.14.2's two values.yaml files, live and in the commented-out examples, is
//! accepted by our charts, and a key that has an effect in ARC's chart has one in ours. The keys
//! come from `tests/suites/data/arc-0.14.2/values-*.tsv` (made by `xtask/scripts/arc-facts.py
//! values`; no network needed).
//!
//! For each chart, per top-level key: the key's example (all of its leaves with ARC's example
//! values) renders; each leaf alone over the chart's required values renders; and removing one
//! leaf from the example changes the output (or makes it fail), unless the leaf's value is
//! empty, is the default, or the leaf has no effect in ARC either ([`no_effect_in_arc`]).

use std::collections::BTreeMap;
use std::thread;

use serde_json::{Value, json};
use suites::helm::{Chart, Render};

/// One key of ARC's values file.
#[derive(Debug, Clone)]
struct Key {
    path: String,
    live: bool,
    value: Value,
}

fn keys(chart: Chart) -> Vec<Key> {
    let name = chart
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = suites::helm::workspace_root()
        .join(format!("tests/suites/data/arc-0.14.2/values-{name}.tsv"));
    let text = std::fs::read_to_string(&path).expect("ARC's values keys");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 3, "{}: bad line {l:?}", path.display());
            Key {
                path: f[0].to_owned(),
                live: f[1] == "live",
                value: serde_json::from_str(f[2]).expect("a JSON value"),
            }
        })
        .collect()
}

/// The keys with no key below them.
fn leaves(keys: &[Key]) -> Vec<Key> {
    keys.iter()
        .filter(|k| {
            !keys.iter().any(|o| {
                o.path.len() > k.path.len()
                    && o.path.starts_with(&k.path)
                    && matches!(o.path.as_bytes()[k.path.len()], b'.' | b'[')
            })
        })
        .cloned()
        .collect()
}

/// The value a leaf is walked with: ARC's, or for what the digest does not keep (collections,
/// prose) a sample of the right shape.
fn sample(key: &Key) -> Option<Value> {
    let last = key.path.rsplit(['.', ']']).next().unwrap_or_default();
    let value = match (&key.value, last) {
        (Value::Null, _) => return None,
        (Value::String(s), "github_app_private_key") if s == "<text>" => {
            json!("-----BEGIN RSA PRIVATE KEY-----\nwalk\n-----END RSA PRIVATE KEY-----\n")
        }
        (Value::String(s), _) if s == "<text>" => json!("walk text"),
        (Value::String(s), _) if s == "map" => match last {
            "affinity" => json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "walk", "operator": "Exists"}]}]}}}),
            _ => json!({"walk": "yes"}),
        },
        (Value::String(s), _) if s == "list" => match last {
            "kubernetesModeAdditionalRoleRules" => {
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
            }
            "imagePullSecrets" => json!([{"name": "walk"}]),
            "tolerations" => json!([{"key": "walk", "operator": "Exists"}]),
            "topologySpreadConstraints" => json!([{"maxSkew": 1, "topologyKey": "zone",
                "whenUnsatisfiable": "DoNotSchedule"}]),
            "volumes" => json!([{"name": "walk", "emptyDir": {}}]),
            "volumeMounts" => json!([{"name": "walk", "mountPath": "/walk"}]),
            _ => json!(["walk"]),
        },
        (v, _) => v.clone(),
    };
    Some(value)
}

/// Sets `path` (`a.b[].c`: `[]` is the first item of a list) in `values`.
fn set(values: &mut Value, path: &str, value: Value) {
    let mut node = values;
    let steps: Vec<&str> = path.split('.').collect();
    for (i, step) in steps.iter().enumerate() {
        let (name, items) = match step.find('[') {
            Some(at) => (&step[..at], step[at..].len() / 2),
            None => (*step, 0),
        };
        if !node.is_object() {
            *node = json!({});
        }
        let last = i + 1 == steps.len();
        let slot = node
            .as_object_mut()
            .expect("object")
            .entry(name.to_owned())
            .or_insert(Value::Null);
        node = slot;
        for _ in 0..items {
            if !node.is_array() || node.as_array().is_some_and(Vec::is_empty) {
                *node = json!([{}]);
            }
            node = &mut node.as_array_mut().expect("array")[0];
        }
        if last {
            *node = value;
            return;
        }
    }
}

/// Deep-merges `over` into `base`.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The value at a dotted path without lists.
fn get<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(values, |node, step| node.get(step))
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Leaves that change nothing in ARC's chart either, and why.
fn no_effect_in_arc(chart: Chart, path: &str) -> bool {
    match chart {
        // ARC's template reads keyVault.azureKeyVault.* and keyVault.proxy; the snake-case keys
        // of its commented example reach nothing there, so they are accepted and ignored here.
        Chart::ScaleSet => path.starts_with("keyVault.azure_key_vault."),
        Chart::Controller => false,
    }
}

/// Leaves ARC's chart fails to render without their siblings; ours refuses them too, naming
/// what is missing.
fn refused_by_arc_alone(chart: Chart, path: &str) -> bool {
    // ARC's runner container helper reads certificateFrom.configMapKeyRef.key whenever
    // runnerMountPath is set: a nil-pointer template error without it.
    chart == Chart::ScaleSet && path == "githubServerTLS.runnerMountPath"
}

/// The values every render of `chart` starts from (what a real install must give).
fn required(chart: Chart) -> Value {
    match chart {
        Chart::Controller => json!({}),
        Chart::ScaleSet => json!({
            "githubConfigUrl": "https://github.com/actions",
            "githubConfigSecret": {"github_token": "gh_walk"},
            "controllerServiceAccount": {"name": "arc", "namespace": "arc-system"}
        }),
    }
}

/// The rendered objects, or the error.
fn render(chart: Chart, values: &Value) -> Result<Value, String> {
    Render::new(chart, "walk", "walk-ns")
        .values(values.clone())
        .render()
        .map(|r| Value::Array(r.objects().cloned().collect()))
        .map_err(|e| e.to_string())
}

fn walk(chart: Chart) {
    let keys = keys(chart);
    assert!(keys.len() > 20, "{chart:?}: too few keys ({})", keys.len());
    let mut by_top: BTreeMap<String, Vec<Key>> = BTreeMap::new();
    for leaf in leaves(&keys) {
        let top = leaf
            .path
            .split(['.', '['])
            .next()
            .unwrap_or_default()
            .to_owned();
        by_top.entry(top).or_default().push(leaf);
    }
    let base = required(chart);
    let failures: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = by_top
            .iter()
            .map(|(top, leaves)| {
                let base = base.clone();
                s.spawn(move || walk_top(chart, &base, top, leaves))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("walk thread"))
            .collect()
    });
    assert!(
        failures.is_empty(),
        "{chart:?}: {} of ARC's keys are not honoured:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The walk of one top-level key; the failures.
fn walk_top(chart: Chart, base: &Value, top: &str, leaves: &[Key]) -> Vec<String> {
    let mut failures = Vec::new();
    // Each leaf alone, where it stands alone: not in a list item, and with no sibling in ARC's
    // file (siblings such as metrics.* or proxy.http.url and .credentialSecretRef go together;
    // the example below renders them together).
    for leaf in leaves {
        let Some(value) = sample(leaf) else { continue };
        let parent = leaf.path.rsplit_once('.').map_or("", |(p, _)| p);
        let has_sibling = leaves.iter().any(|o| {
            o.path != leaf.path && o.path.rsplit_once('.').map_or("", |(p, _)| p) == parent
        });
        if is_empty(&value) || leaf.path.contains("[]") || (has_sibling && !parent.is_empty()) {
            continue;
        }
        let mut values = base.clone();
        set(&mut values, &leaf.path, value);
        match render(chart, &values) {
            Err(e) if !refused_by_arc_alone(chart, &leaf.path) => {
                failures.push(format!("{} alone is refused: {e}", leaf.path));
            }
            Ok(_) if refused_by_arc_alone(chart, &leaf.path) => {
                failures.push(format!("{} alone renders; ARC refuses it", leaf.path));
            }
            _ => {}
        }
    }
    // The example: every leaf with a non-empty value (ARC's empty ones stand for "fill in").
    let example: Vec<(&Key, Value)> = leaves
        .iter()
        .filter_map(|l| sample(l).map(|v| (l, v)))
        .filter(|(_, v)| !is_empty(v))
        .collect();
    let with = |skip: Option<&str>| {
        let mut values = base.clone();
        let mut block = json!({});
        for (leaf, value) in &example {
            if Some(leaf.path.as_str()) != skip {
                set(&mut block, &leaf.path, value.clone());
            }
        }
        merge(&mut values, &block);
        values
    };
    let full = match render(chart, &with(None)) {
        Ok(out) => out,
        Err(e) => {
            failures.push(format!("{top}: ARC's example is refused: {e}"));
            return failures;
        }
    };
    for (leaf, value) in &example {
        if leaf.live || no_effect_in_arc(chart, &leaf.path) || get(base, &leaf.path) == Some(value)
        {
            continue;
        }
        if render(chart, &with(Some(&leaf.path))).is_ok_and(|out| out == full) {
            failures.push(format!("{}: no effect on the rendered objects", leaf.path));
        }
    }
    failures
}

#[test]
fn every_key_of_arcs_controller_values_is_honoured() {
    walk(Chart::Controller);
}

#[test]
fn every_key_of_arcs_scale_set_values_is_honoured() {
    walk(Chart::ScaleSet);
}

#[test]
fn set_builds_nested_lists_and_maps() {
    let mut v = json!({});
    set(&mut v, "a.b[].c", json!(1));
    set(&mut v, "a.b[].d", json!(2));
    set(&mut v, "e", json!("x"));
    assert_eq!(v, json!({"a": {"b": [{"c": 1, "d": 2}]}, "e": "x"}));
    let keys = [
        Key {
            path: "a".into(),
            live: true,
            value: json!("map"),
        },
        Key {
            path: "a.b".into(),
            live: true,
            value: json!(1),
        },
        Key {
            path: "c[].d".into(),
            live: false,
            value: json!(2),
        },
        Key {
            path: "c".into(),
            live: false,
            value: json!("list"),
        },
    ];
    let paths: Vec<String> = leaves(&keys).into_iter().map(|k| k.path).collect();
    assert_eq!(paths, ["a.b", "c[].d"]);
}
