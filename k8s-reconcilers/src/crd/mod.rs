//! The four custom resources of group `actions.github.com/v1alpha1`, field for field ARC's.
//!
//! [`all`] lists their definitions; [`file_name`] gives ARC's CRD file name for each.

// kube's `printcolumn(type_ = ..)` repeats keys across columns, which this lint misreads.
#![allow(clippy::duplicated_attributes)]

mod autoscaling_listener;
mod autoscaling_runner_set;
mod common;
mod ephemeral_runner;
mod ephemeral_runner_set;
pub mod markers;

pub use autoscaling_listener::{
    AutoscalingListener, AutoscalingListenerSpec, AutoscalingListenerStatus,
};
pub use autoscaling_runner_set::{
    AutoscalingRunnerSet, AutoscalingRunnerSetSpec, AutoscalingRunnerSetStatus,
    MAX_NAME as MAX_ARS_NAME, name_rule,
};
pub use common::{
    AzureKeyVaultConfig, CounterMetric, GaugeMetric, HistogramMetric, MetricsConfig, ProxyConfig,
    ProxyServerConfig, ResourceMeta, TlsCertificateSource, TlsConfig, VaultConfig,
};
pub use ephemeral_runner::{EphemeralRunner, EphemeralRunnerSpec, EphemeralRunnerStatus};
pub use ephemeral_runner_set::{
    EphemeralRunnerSet, EphemeralRunnerSetSpec, EphemeralRunnerSetStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

/// A spec type whose derived serde code is inherent (`#[serde(remote = "Self")]`), so that its
/// `Deserialize` can take an absent `spec` ([`spec_or_default!`]).
trait DerivedSpec: Sized + Default {
    fn derived<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error>;
}

/// Reads an absent or `null` spec as the default one and anything else with the derived code.
struct OrDefault<T>(std::marker::PhantomData<T>);

impl<'de, T: DerivedSpec> serde::de::Visitor<'de> for OrDefault<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a spec object, or none")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        T::derived(deserializer)
    }
}

/// Lets an object stored without `spec` be read: ARC's CRDs neither require nor default it, so
/// while they are installed the API server keeps such objects as sent, and a spec that must be
/// present would fail the decoding of every list of the kind (the controller's watch with it).
/// serde asks a missing field's type for an option, which this `Deserialize` answers with the
/// default spec.
macro_rules! spec_or_default {
    ($($spec:ty),*) => {$(
        impl DerivedSpec for $spec {
            fn derived<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$spec>::deserialize(d)
            }
        }

        impl<'de> serde::Deserialize<'de> for $spec {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_option(OrDefault(std::marker::PhantomData))
            }
        }

        impl serde::Serialize for $spec {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$spec>::serialize(self, s)
            }
        }
    )*};
}

spec_or_default!(
    AutoscalingListenerSpec,
    AutoscalingRunnerSetSpec,
    EphemeralRunnerSetSpec,
    EphemeralRunnerSpec
);

/// API group of the four kinds.
pub const GROUP: &str = "actions.github.com";
/// API version of the four kinds.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of the four kinds.
pub const API_VERSION: &str = "actions.github.com/v1alpha1";

/// The four CustomResourceDefinitions, with the list and map markers of the Kubernetes types they
/// embed ([`markers`]).
///
/// Like ARC's controller-gen output, the schemas carry no `default` values (schemars derives
/// them from `#[serde(default)]`, and the API server would then write zero values into
/// objects), except Kubernetes' own defaults of list-map keys, which the API server requires.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        AutoscalingListener::crd(),
        with_root_rule(AutoscalingRunnerSet::crd(), name_rule()),
        EphemeralRunnerSet::crd(),
        EphemeralRunner::crd(),
    ]
    .into_iter()
    .map(without_defaults)
    .map(with_optional_spec)
    .collect()
}

/// Makes the top-level `spec` optional, as in ARC's CRDs, with a default of `{}`: the API
/// server stores an object sent without one with an empty spec (and adds it when reading older
/// ones), so every object the controllers read has the `spec` the Rust types need, and an
/// empty spec is reported field by field like any other.
fn with_optional_spec(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        if let Some(required) = schema.required.as_mut() {
            required.retain(|r| r != "spec");
            if required.is_empty() {
                schema.required = None;
            }
        }
        if let Some(spec) = schema.properties.as_mut().and_then(|p| p.get_mut("spec")) {
            spec.default = Some(
                k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                    serde_json::json!({}),
                ),
            );
        }
    }
    crd
}

/// Adds an `x-kubernetes-validations` rule to the root of every version's schema (where a rule
/// can see `metadata.name`).
fn with_root_rule(
    mut crd: CustomResourceDefinition,
    rule: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule,
) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            schema
                .x_kubernetes_validations
                .get_or_insert_with(Vec::new)
                .push(rule.clone());
        }
    }
    crd
}

fn without_defaults(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            strip_defaults(schema, false, &[]);
        }
    }
    crd
}

/// Removes every `default` but the schema's own when `keep_own`, and those of the properties
/// named in `kept_properties` (the keys of the list map whose items `schema` describes).
fn strip_defaults(schema: &mut JSONSchemaProps, keep_own: bool, kept_properties: &[String]) {
    if !keep_own {
        schema.default = None;
    }
    if let Some(properties) = schema.properties.as_mut() {
        for (name, property) in properties {
            strip_defaults(property, kept_properties.contains(name), &[]);
        }
    }
    for props in [&mut schema.pattern_properties, &mut schema.definitions]
        .into_iter()
        .flatten()
    {
        props
            .values_mut()
            .for_each(|p| strip_defaults(p, false, &[]));
    }
    for list in [&mut schema.all_of, &mut schema.any_of, &mut schema.one_of]
        .into_iter()
        .flatten()
    {
        list.iter_mut().for_each(|p| strip_defaults(p, false, &[]));
    }
    if let Some(not) = schema.not.as_mut() {
        strip_defaults(not, false, &[]);
    }
    let map_keys = schema
        .x_kubernetes_list_map_keys
        .clone()
        .unwrap_or_default();
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(s)) => strip_defaults(s, false, &map_keys),
        Some(JSONSchemaPropsOrArray::Schemas(list)) => list
            .iter_mut()
            .for_each(|p| strip_defaults(p, false, &map_keys)),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(s)) = schema.additional_properties.as_mut() {
        strip_defaults(s, false, &[]);
    }
}

/// ARC's file name for a CRD: `actions.github.com_<plural>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// Each CRD as ARC's file name and YAML text, in the order of [`all`].
///
/// This is what `cargo xtask crds` writes into `charts/gha-runner-scale-set-controller/crds/`.
pub fn render_yaml() -> Result<Vec<(String, String)>, serde_saphyr::SerializeError> {
    all()
        .iter()
        .map(|crd| {
            let yaml = serde_saphyr::to_string(crd)?;
            Ok((file_name(crd), format!("---\n{yaml}")))
        })
        .collect()
}

/// Installs (server-side apply, field manager `arc-rs-crds`) the four CRDs and waits until the
/// API server reports each of them Established.
pub async fn install(client: &kube::Client, timeout: std::time::Duration) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use kube::api::{Api, Patch, PatchParams};
    use kube::runtime::{conditions, wait::await_condition};

    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply("arc-rs-crds").force();
    for crd in all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        if let Err(e) = api.patch(&name, &params, &Patch::Apply(&crd)).await {
            anyhow::bail!("installing CRD {name}: {e:?}");
        }
    }
    for crd in all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        tokio::time::timeout(
            timeout,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not Established within {timeout:?}"))?
        .with_context(|| format!("watching CRD {name}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Issue #19: objects stored without `spec` (or with `spec: null`) under ARC's CRDs read as
    /// the default spec; a present spec reads and writes as before.
    #[test]
    fn an_absent_spec_reads_as_the_default() -> Result<(), serde_json::Error> {
        let object = |spec: Option<serde_json::Value>| {
            let mut o = json!({"apiVersion": API_VERSION, "kind": "AutoscalingListener",
                "metadata": {"name": "l", "namespace": "arc"}});
            if let Some(spec) = spec {
                o["spec"] = spec;
            }
            o
        };
        for absent in [None, Some(serde_json::Value::Null)] {
            let al: AutoscalingListener = serde_json::from_value(object(absent))?;
            assert_eq!(al.spec, AutoscalingListenerSpec::default());
            let bytes = serde_json::to_vec(&object(None))?;
            let al: AutoscalingListener = serde_json::from_slice(&bytes)?;
            assert_eq!(al.spec, AutoscalingListenerSpec::default());
        }
        let spec = json!({"autoscalingRunnerSetName": "arc", "maxRunners": 3});
        let al: AutoscalingListener = serde_json::from_value(object(Some(spec.clone())))?;
        assert_eq!(al.spec.autoscaling_runner_set_name.as_deref(), Some("arc"));
        assert_eq!(serde_json::to_value(&al)?["spec"], spec);
        let wrong = serde_json::from_value::<AutoscalingListener>(object(Some(json!(
            {"maxRunners": "three"}
        ))));
        assert!(wrong.is_err(), "a spec that is there is still checked");
        for kind in [
            "AutoscalingRunnerSet",
            "EphemeralRunnerSet",
            "EphemeralRunner",
        ] {
            let bare = json!({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": "x"}});
            let decoded = match kind {
                "AutoscalingRunnerSet" => serde_json::from_value::<AutoscalingRunnerSet>(bare)
                    .map(|o| o.spec.eq(&Default::default())),
                "EphemeralRunnerSet" => serde_json::from_value::<EphemeralRunnerSet>(bare)
                    .map(|o| o.spec.eq(&Default::default())),
                _ => serde_json::from_value::<EphemeralRunner>(bare)
                    .map(|o| o.spec.eq(&Default::default())),
            };
            assert!(decoded?, "{kind}");
        }
        Ok(())
    }
}
