//! The EphemeralRunnerSet and AutoscalingListener an AutoscalingRunnerSet asks for
//! (docs/architecture.md#autoscalingrunnerset-reconciler): pure builders.

use k8s_openapi::api::core::v1::LocalObjectReference;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::{
    AutoscalingListener, AutoscalingListenerSpec, AutoscalingRunnerSet, EphemeralRunnerSet,
    EphemeralRunnerSetSpec, EphemeralRunnerSpec,
};
use crate::meta::{Map, integrity_hash, merge_annotations, merge_labels};
use crate::names::{annotations, labels};
use crate::options::ManagerOptions;

/// `maxRunners` given to the listener when the ARS sets none.
pub const UNLIMITED_RUNNERS: i32 = i32::MAX;

/// The URL-derived `actions.github.com/{enterprise,organization,repository}` labels.
pub fn url_labels(config_url: &str) -> Map {
    scaleset_core::naming::ConfigUrl::parse(config_url)
        .map(|u| {
            u.labels()
                .into_iter()
                .map(|(k, v)| (format!("actions.github.com/{k}"), v))
                .collect()
        })
        .unwrap_or_default()
}

fn computed_labels(ars: &AutoscalingRunnerSet, component: &str) -> Map {
    let mut out = Map::new();
    out.insert(labels::PART_OF.into(), labels::PART_OF_VALUE.into());
    out.insert(labels::COMPONENT.into(), component.into());
    if let Some(v) = ars.labels().get(labels::VERSION) {
        out.insert(labels::VERSION.into(), v.clone());
    }
    out.insert(labels::SCALE_SET_NAME.into(), ars.name_any());
    out.insert(
        labels::SCALE_SET_NAMESPACE.into(),
        ars.namespace().unwrap_or_default(),
    );
    out.extend(url_labels(
        ars.spec.github_config_url.as_deref().unwrap_or_default(),
    ));
    out
}

/// The EphemeralRunnerSet for `ars` with scale set `scale_set_id`.
pub fn runner_set(
    ars: &AutoscalingRunnerSet,
    scale_set_id: i64,
    options: &ManagerOptions,
) -> EphemeralRunnerSet {
    let excluded = &options.exclude_label_propagation_prefixes;
    let spec = &ars.spec;
    let meta = spec
        .ephemeral_runner_set_metadata
        .clone()
        .unwrap_or_default();
    let with_ars = merge_labels(
        Some(ars.labels()),
        Some(&computed_labels(ars, labels::COMPONENT_RUNNER_SET)),
        excluded,
    );
    let labels = merge_labels(meta.labels.as_ref(), Some(&with_ars), excluded);

    let runner_spec = EphemeralRunnerSpec {
        github_config_url: spec.github_config_url.clone().unwrap_or_default(),
        github_config_secret: spec.github_config_secret.clone().unwrap_or_default(),
        github_server_tls: spec.github_server_tls.clone(),
        runner_scale_set_id: scale_set_id,
        proxy: spec.proxy.clone(),
        proxy_secret_ref: None,
        vault_config: spec.vault_config.clone(),
        ephemeral_runner_config_secret_metadata: spec
            .ephemeral_runner_config_secret_metadata
            .clone(),
        pod_template: spec.template.clone().unwrap_or_default(),
    };
    let mut copied = Map::new();
    for key in [
        annotations::RUNNER_GROUP_NAME,
        annotations::RUNNER_SCALE_SET_NAME,
    ] {
        if let Some(v) = ars.annotations().get(key) {
            copied.insert(key.into(), v.clone());
        }
    }
    let mut annotations = merge_annotations(meta.annotations.as_ref(), Some(&copied));
    annotations.insert(
        annotations::INTEGRITY_HASH.into(),
        integrity_hash(&runner_spec),
    );

    EphemeralRunnerSet {
        metadata: ObjectMeta {
            name: Some(ars.name_any()),
            namespace: ars.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: ars.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: EphemeralRunnerSetSpec {
            replicas: 0,
            patch_id: 0,
            ephemeral_runner_spec: runner_spec,
            ephemeral_runner_metadata: spec.ephemeral_runner_metadata.clone(),
        },
        status: None,
    }
}

/// The AutoscalingListener for `ars` with scale set `scale_set_id`, in the controller namespace.
pub fn listener(
    ars: &AutoscalingRunnerSet,
    scale_set_id: i64,
    options: &ManagerOptions,
) -> AutoscalingListener {
    let excluded = &options.exclude_label_propagation_prefixes;
    let spec = &ars.spec;
    let ars_name = ars.name_any();
    let ars_namespace = ars.namespace().unwrap_or_default();
    let config_url = spec.github_config_url.clone().unwrap_or_default();
    let name = crate::names::listener_name(
        &ars_name,
        &ars_namespace,
        spec.runner_group.as_deref().unwrap_or_default(),
        &config_url,
    );
    let meta = spec.autoscaling_listener.clone().unwrap_or_default();
    let with_ars = merge_labels(
        Some(ars.labels()),
        Some(&computed_labels(ars, labels::COMPONENT_LISTENER)),
        excluded,
    );
    let labels = merge_labels(meta.labels.as_ref(), Some(&with_ars), excluded);
    let pull_secrets: Vec<LocalObjectReference> = options
        .listener_image_pull_secrets
        .iter()
        .map(|n| LocalObjectReference { name: n.clone() })
        .collect();

    let al_spec = AutoscalingListenerSpec {
        github_config_url: Some(config_url),
        github_config_secret: spec.github_config_secret.clone(),
        runner_scale_set_id: Some(scale_set_id),
        autoscaling_runner_set_namespace: Some(ars_namespace),
        autoscaling_runner_set_name: Some(ars_name.clone()),
        ephemeral_runner_set_name: Some(ars_name),
        max_runners: Some(spec.max_runners.unwrap_or(UNLIMITED_RUNNERS)),
        min_runners: Some(spec.min_runners.unwrap_or(0)),
        image: Some(options.listener_image.clone()),
        image_pull_secrets: (!pull_secrets.is_empty()).then_some(pull_secrets),
        proxy: spec.proxy.clone(),
        github_server_tls: spec.github_server_tls.clone(),
        vault_config: spec.vault_config.clone(),
        metrics: spec.listener_metrics.clone(),
        template: spec.listener_template.clone(),
        config_secret_metadata: spec.listener_config_secret_metadata.clone(),
        service_account_metadata: spec.listener_service_account_metadata.clone(),
        role_metadata: spec.listener_role_metadata.clone(),
        role_binding_metadata: spec.listener_role_binding_metadata.clone(),
    };
    let mut hash = Map::new();
    hash.insert(
        annotations::INTEGRITY_HASH.into(),
        integrity_hash(&al_spec.without_bounds()),
    );
    let annotations = merge_annotations(meta.annotations.as_ref(), Some(&hash));

    AutoscalingListener {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(options.controller_namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: al_spec,
        status: None,
    }
}

/// The AutoscalingRunnerSet's own change hash: spec plus labels, without the runner bounds,
/// which reach the listener in place and concern nothing else.
pub fn ars_hash(ars: &AutoscalingRunnerSet) -> String {
    integrity_hash(&(&ars.spec.without_bounds(), ars.labels()))
}
