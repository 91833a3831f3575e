//! Kubernetes' list and map markers on the core types our CRDs embed.
//!
//! Server-side apply merges a list by its `x-kubernetes-list-type` (`atomic`, `set`, or `map`
//! keyed by `x-kubernetes-list-map-keys`) and replaces an `x-kubernetes-map-type: atomic` object
//! whole. Kubernetes declares these on its own types (a pod's `containers` is a map keyed by
//! `name`), and a CRD that embeds a pod template must repeat them, or two appliers of one
//! template would merge containers as one atomic list. k8s-openapi's schemas do not carry them,
//! so `kubernetes_markers.json` holds them as the API server's OpenAPI v3 document declares them
//! (written by `cargo xtask crds` from the test bed's newest Kubernetes, checked against it by
//! the `crds` suite), and [`with_markers`] puts them into the schema of each embedded type.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The markers of one place inside an embedded type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Marker {
    /// Where, from the type's root: property names joined by `.`, `[]` for a list's items and
    /// `{}` for a map's values (`spec.containers[].ports`); empty for the root itself.
    pub path: String,
    /// `x-kubernetes-list-type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_map_keys: Option<Vec<String>>,
    /// `x-kubernetes-map-type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_type: Option<String>,
    /// The default of a list-map key that is not required (a port's `protocol`): the API
    /// server accepts a map key only if it is required or defaulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Properties Kubernetes defaults and does not require (a reference's `name`, default
    /// `""`). k8s-openapi's schemas list them as required, which would refuse manifests that
    /// Kubernetes and ARC's CRDs accept; [`with_markers`] takes them out of `required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<Vec<String>>,
}

impl Marker {
    /// The marker's path inside a schema where its type sits at `prefix` (a path too).
    pub fn path_under(&self, prefix: &str) -> String {
        [prefix, self.path.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// The committed markers: where they were read, and the markers of each embedded type by its
/// OpenAPI name (`io.k8s.api.core.v1.PodTemplateSpec`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesMarkers {
    /// The document they were read from, e.g. `kube-apiserver v1.37.2 /openapi/v3/api/v1`.
    pub source: String,
    /// Markers by type.
    pub types: BTreeMap<String, Vec<Marker>>,
}

/// The OpenAPI name of `PodTemplateSpec`.
pub const POD_TEMPLATE_SPEC: &str = "io.k8s.api.core.v1.PodTemplateSpec";
/// The OpenAPI name of `ConfigMapKeySelector`.
pub const CONFIG_MAP_KEY_SELECTOR: &str = "io.k8s.api.core.v1.ConfigMapKeySelector";
/// The OpenAPI name of `LocalObjectReference`.
pub const LOCAL_OBJECT_REFERENCE: &str = "io.k8s.api.core.v1.LocalObjectReference";
/// Every core type our CRDs embed.
pub const EMBEDDED_TYPES: [&str; 3] = [
    POD_TEMPLATE_SPEC,
    CONFIG_MAP_KEY_SELECTOR,
    LOCAL_OBJECT_REFERENCE,
];

/// Types that embed `LocalObjectReference` inline (its `name` is theirs). controller-gen, which
/// wrote ARC's CRDs, gives them the embedded type's `x-kubernetes-map-type: atomic`; the API
/// server's OpenAPI document declares it on `LocalObjectReference` alone, so [`from_openapi`]
/// adds it to these, and server-side apply replaces such a reference whole, as on ARC's CRDs.
pub const EMBED_LOCAL_OBJECT_REFERENCE: [&str; 5] = [
    "io.k8s.api.core.v1.ConfigMapEnvSource",
    "io.k8s.api.core.v1.SecretEnvSource",
    "io.k8s.api.core.v1.ConfigMapVolumeSource",
    "io.k8s.api.core.v1.ConfigMapProjection",
    "io.k8s.api.core.v1.SecretProjection",
];

/// The committed file's text.
pub const COMMITTED_JSON: &str = include_str!("kubernetes_markers.json");

static COMMITTED: LazyLock<KubernetesMarkers> = LazyLock::new(|| {
    // The file is ours and checked by a test; an unreadable one leaves the schemas unmarked.
    serde_json::from_str(COMMITTED_JSON).unwrap_or_default()
});

/// The committed markers.
pub fn committed() -> &'static KubernetesMarkers {
    &COMMITTED
}

/// `T`'s schema with the markers of `kind` (an OpenAPI type name) at `prefix` inside it.
fn with_markers<T: JsonSchema>(
    generator: &mut SchemaGenerator,
    kind: &str,
    prefix: &str,
) -> Schema {
    let schema = generator.subschema_for::<T>();
    let mut value = schema.clone().to_value();
    for marker in committed().types.get(kind).into_iter().flatten() {
        if let Some(node) = node_at(&mut value, &marker.path_under(prefix)) {
            set_markers(node, marker);
        }
    }
    Schema::try_from(value).unwrap_or(schema)
}

/// `schema_with` for a field of type `T` holding a `PodTemplateSpec`.
pub fn pod_template_spec<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    with_markers::<T>(generator, POD_TEMPLATE_SPEC, "")
}

/// `schema_with` for a field of type `T` holding a `ConfigMapKeySelector`.
pub fn config_map_key_selector<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    with_markers::<T>(generator, CONFIG_MAP_KEY_SELECTOR, "")
}

/// `schema_with` for a field of type `T` holding a list of `LocalObjectReference`.
pub fn local_object_references<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    with_markers::<T>(generator, LOCAL_OBJECT_REFERENCE, "[]")
}

fn set_markers(node: &mut Map<String, Value>, marker: &Marker) {
    if let Some(optional) = &marker.optional {
        let emptied = node
            .get_mut("required")
            .and_then(Value::as_array_mut)
            .is_some_and(|required| {
                required.retain(|r| !r.as_str().is_some_and(|r| optional.iter().any(|o| o == r)));
                required.is_empty()
            });
        if emptied {
            node.remove("required");
        }
    }
    if let Some(list_type) = &marker.list_type {
        node.insert("x-kubernetes-list-type".into(), list_type.clone().into());
    }
    if let Some(keys) = &marker.list_map_keys {
        node.insert("x-kubernetes-list-map-keys".into(), keys.clone().into());
    }
    if let Some(map_type) = &marker.map_type {
        node.insert("x-kubernetes-map-type".into(), map_type.clone().into());
    }
    if let Some(default) = &marker.default {
        node.insert("default".into(), default.clone());
    }
}

/// The schema object at `path` (see [`Marker::path`]), looking through the `anyOf`/`allOf`
/// wrappers schemars puts around optional values.
pub fn node_at<'a>(value: &'a mut Value, path: &str) -> Option<&'a mut Map<String, Value>> {
    let mut node = unwrap(value)?;
    for step in path.split('.').filter(|s| !s.is_empty()) {
        let (name, suffixes) = match step.find(['[', '{']) {
            Some(i) => step.split_at(i),
            None => (step, ""),
        };
        if !name.is_empty() {
            node = unwrap(node.get_mut("properties")?.get_mut(name)?)?;
        }
        for suffix in suffixes.as_bytes().chunks(2) {
            let key = match suffix {
                b"[]" => "items",
                b"{}" => "additionalProperties",
                _ => return None,
            };
            node = unwrap(node.get_mut(key)?)?;
        }
    }
    Some(node)
}

/// The object schema itself: `value`, or the one branch of an `anyOf`/`allOf`/`oneOf` that
/// is not `null`.
fn unwrap(value: &mut Value) -> Option<&mut Map<String, Value>> {
    let is_wrapper = |m: &Map<String, Value>| {
        !m.contains_key("properties")
            && !m.contains_key("items")
            && ["anyOf", "allOf", "oneOf"]
                .iter()
                .any(|k| m.contains_key(*k))
    };
    let map = value.as_object_mut()?;
    if !is_wrapper(map) {
        return Some(map);
    }
    let key = ["anyOf", "allOf", "oneOf"]
        .into_iter()
        .find(|k| map.contains_key(*k))?;
    map.get_mut(key)?
        .as_array_mut()?
        .iter_mut()
        .find(|branch| branch.get("type").and_then(Value::as_str) != Some("null"))
        .and_then(unwrap)
}

/// The markers of `root` and every type it reaches, read from an OpenAPI v3 document (the API
/// server's `/openapi/v3/api/v1`), as paths from `root`.
pub fn from_openapi(document: &Value, root: &str) -> Result<Vec<Marker>, String> {
    let schemas = document
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .ok_or("the OpenAPI document has no components.schemas")?;
    let mut markers = Vec::new();
    let root_schema = schemas
        .get(root)
        .ok_or_else(|| format!("the OpenAPI document has no schema {root}"))?;
    collect(schemas, root_schema, String::new(), 0, &mut markers)?;
    markers.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(markers)
}

/// The markers of every type of [`EMBEDDED_TYPES`] as `client`'s API server declares them, with
/// the server's version as their source.
pub async fn served(client: &kube::Client) -> anyhow::Result<KubernetesMarkers> {
    use anyhow::Context;
    let version = client
        .apiserver_version()
        .await
        .context("reading the API server's version")?;
    let request = http::Request::get("/openapi/v3/api/v1")
        .body(Vec::new())
        .context("building the OpenAPI request")?;
    let text = client
        .request_text(request)
        .await
        .context("reading the API server's /openapi/v3/api/v1")?;
    let document: Value =
        serde_json::from_str(&text).context("parsing the API server's /openapi/v3/api/v1")?;
    let mut types = BTreeMap::new();
    for kind in EMBEDDED_TYPES {
        let markers = from_openapi(&document, kind).map_err(anyhow::Error::msg)?;
        types.insert(kind.to_owned(), markers);
    }
    Ok(KubernetesMarkers {
        source: format!("kube-apiserver {} /openapi/v3/api/v1", version.git_version),
        types,
    })
}

/// Deeper than any core type nests; a cycle in the document stops here instead of looping.
const MAX_DEPTH: usize = 40;

fn collect(
    schemas: &Map<String, Value>,
    schema: &Value,
    path: String,
    depth: usize,
    out: &mut Vec<Marker>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{path}: nested deeper than {MAX_DEPTH} levels"));
    }
    let referenced = reference(schema)
        .map(|name| {
            schemas
                .get(name)
                .ok_or_else(|| format!("{path}: the document has no schema {name}"))
        })
        .transpose()?;
    let marker_of = |s: &Value| Marker {
        path: path.clone(),
        list_type: s["x-kubernetes-list-type"].as_str().map(str::to_owned),
        list_map_keys: s["x-kubernetes-list-map-keys"].as_array().map(|keys| {
            keys.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        }),
        map_type: s["x-kubernetes-map-type"].as_str().map(str::to_owned),
        default: None,
        optional: None,
    };
    let mut marker = marker_of(schema);
    if let Some(target) = referenced {
        let inner = marker_of(target);
        marker.list_type = marker.list_type.or(inner.list_type);
        marker.list_map_keys = marker.list_map_keys.or(inner.list_map_keys);
        marker.map_type = marker.map_type.or(inner.map_type);
    }
    if reference(schema).is_some_and(|name| EMBED_LOCAL_OBJECT_REFERENCE.contains(&name)) {
        marker.map_type = marker.map_type.or_else(|| Some("atomic".to_owned()));
    }
    let body = referenced.unwrap_or(schema);
    let optional = defaulted_optional(body);
    if !optional.is_empty() {
        marker.optional = Some(optional);
    }
    for key in marker.list_map_keys.iter().flatten() {
        let key_schema = body.get("items").map(|items| {
            let items = reference(items)
                .and_then(|name| schemas.get(name))
                .unwrap_or(items);
            &items["properties"][key.as_str()]
        });
        if let Some(default) = key_schema.and_then(|k| k.get("default")) {
            out.push(Marker {
                path: format!("{path}[].{key}"),
                default: Some(default.clone()),
                ..Marker::default()
            });
        }
    }
    if marker.list_type.is_some() || marker.map_type.is_some() || marker.optional.is_some() {
        out.push(marker);
    }
    if let Some(properties) = body.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            collect(schemas, property, child, depth + 1, out)?;
        }
    }
    if let Some(items) = body.get("items") {
        collect(schemas, items, format!("{path}[]"), depth + 1, out)?;
    }
    if let Some(values) = body.get("additionalProperties").filter(|v| v.is_object()) {
        collect(schemas, values, format!("{path}{{}}"), depth + 1, out)?;
    }
    Ok(())
}

/// The properties of an object schema that have a default and are not in its `required`.
fn defaulted_optional(body: &Value) -> Vec<String> {
    let required: Vec<&str> = body["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    body.get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(name, property)| {
            property.get("default").is_some() && !required.contains(&name.as_str())
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// The type a schema refers to: `$ref`, or the one `$ref` of an `allOf` (how OpenAPI v3 adds a
/// default beside a reference).
fn reference(schema: &Value) -> Option<&str> {
    let target = schema["$ref"].as_str().or_else(|| {
        let all_of = schema["allOf"].as_array()?;
        match all_of.as_slice() {
            [only] => only["$ref"].as_str(),
            _ => None,
        }
    })?;
    target.strip_prefix("#/components/schemas/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn from_openapi_follows_references_and_keeps_paths() {
        let document = json!({"components": {"schemas": {
            "T": {"properties": {
                "containers": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name", "protocol"],
                    "items": {"allOf": [{"$ref": "#/components/schemas/C"}], "default": {}}},
                "selector": {"$ref": "#/components/schemas/S"},
                "labels": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/S"}},
            }},
            "C": {"properties": {"args": {"type": "array", "x-kubernetes-list-type": "atomic"},
                "name": {"type": "string"}, "protocol": {"type": "string", "default": "TCP"}}},
            "S": {"x-kubernetes-map-type": "atomic", "properties": {"name": {"type": "string"}}},
        }}});
        let markers = from_openapi(&document, "T").expect("markers");
        let paths: Vec<(&str, Option<&str>, Option<&str>)> = markers
            .iter()
            .map(|m| {
                (
                    m.path.as_str(),
                    m.list_type.as_deref(),
                    m.map_type.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            paths,
            [
                ("containers", Some("map"), None),
                ("containers[]", None, None),
                ("containers[].args", Some("atomic"), None),
                ("containers[].protocol", None, None),
                ("labels{}", None, Some("atomic")),
                ("selector", None, Some("atomic")),
            ]
        );
        assert_eq!(
            markers[0].list_map_keys,
            Some(vec!["name".to_owned(), "protocol".to_owned()])
        );
        assert_eq!(markers[1].optional, Some(vec!["protocol".to_owned()]));
        assert_eq!(markers[3].default, Some(json!("TCP")));
        assert!(from_openapi(&document, "Missing").is_err());
    }

    #[test]
    fn defaulted_properties_leave_required_and_embedders_of_a_reference_are_atomic() {
        let optional = Marker {
            optional: Some(vec!["name".to_owned()]),
            ..Marker::default()
        };
        let mut selector = json!({"required": ["key", "name"]});
        set_markers(selector.as_object_mut().expect("object"), &optional);
        assert_eq!(selector, json!({"required": ["key"]}));
        let mut reference = json!({"required": ["name"]});
        set_markers(reference.as_object_mut().expect("object"), &optional);
        assert_eq!(reference, json!({}));

        let document = json!({"components": {"schemas": {
            "T": {"properties": {"envFrom": {"$ref": "#/components/schemas/io.k8s.api.core.v1.SecretEnvSource"}}},
            "io.k8s.api.core.v1.SecretEnvSource": {"properties": {
                "name": {"type": "string", "default": ""}, "optional": {"type": "boolean"}}},
        }}});
        let markers = from_openapi(&document, "T").expect("markers");
        assert_eq!(markers.len(), 1);
        assert_eq!(markers[0].path, "envFrom");
        assert_eq!(markers[0].map_type.as_deref(), Some("atomic"));
        assert_eq!(markers[0].optional, Some(vec!["name".to_owned()]));
    }

    #[test]
    fn node_at_looks_through_optional_wrappers() {
        let mut schema = json!({"anyOf": [
            {"type": "object", "properties": {"spec": {"properties": {
                "containers": {"type": "array", "items": {"properties": {"ports": {"type": "array"}}}}}}}},
            {"type": "null"},
        ]});
        let node = node_at(&mut schema, "spec.containers[].ports").expect("found");
        assert_eq!(node["type"], "array");
        assert!(node_at(&mut schema, "spec.volumes").is_none());
        assert!(node_at(&mut schema, "").is_some());
    }

    #[test]
    fn the_committed_markers_parse_and_cover_every_embedded_type() {
        let markers: KubernetesMarkers =
            serde_json::from_str(COMMITTED_JSON).expect("kubernetes_markers.json parses");
        for kind in EMBEDDED_TYPES {
            assert!(
                markers.types.get(kind).is_some_and(|m| !m.is_empty()),
                "kubernetes_markers.json has no markers for {kind}: run `cargo xtask crds`"
            );
        }
    }
}
