//! The listener's ServiceAccount, Role, RoleBinding and Secrets
//! (docs/architecture.md#listener-children).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use secrecy::ExposeSecret;

use crate::crd::AutoscalingListener;
use crate::github::ProxySettings;
use crate::listener_config;
use crate::meta::{Map, integrity_hash, merge_annotations, merge_labels};
use crate::names::{annotations, labels, listener_config_secret_name, listener_proxy_secret_name};

/// Namespace and name of the AutoscalingRunnerSet a listener serves.
pub struct Owner<'a> {
    /// ARS namespace (where the Role and RoleBinding live).
    pub namespace: &'a str,
    /// ARS name.
    pub name: &'a str,
}

fn scale_set_labels(owner: &Owner<'_>) -> Map {
    Map::from([
        (labels::SCALE_SET_NAMESPACE.into(), owner.namespace.into()),
        (labels::SCALE_SET_NAME.into(), owner.name.into()),
    ])
}

fn with_hash(base: Option<&Map>, hash: String) -> Map {
    merge_annotations(
        base,
        Some(&Map::from([(annotations::INTEGRITY_HASH.into(), hash)])),
    )
}

/// The listener ServiceAccount (controller namespace, owned by the listener).
pub fn service_account(
    al: &AutoscalingListener,
    owner: &Owner<'_>,
    excluded: &[String],
) -> ServiceAccount {
    let meta = al.spec.service_account_metadata.clone().unwrap_or_default();
    let computed = merge_labels(Some(al.labels()), Some(&scale_set_labels(owner)), excluded);
    ServiceAccount {
        metadata: ObjectMeta {
            name: Some(al.name_any()),
            namespace: al.namespace(),
            labels: Some(merge_labels(
                meta.labels.as_ref(),
                Some(&computed),
                excluded,
            )),
            annotations: Some(with_hash(
                meta.annotations.as_ref(),
                integrity_hash("serviceaccount"),
            )),
            owner_references: al.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn rbac_labels(
    al: &AutoscalingListener,
    owner: &Owner<'_>,
    extra: Option<&Map>,
    excluded: &[String],
) -> Map {
    let mut computed = scale_set_labels(owner);
    computed.insert(
        labels::LISTENER_NAMESPACE.into(),
        al.namespace().unwrap_or_default(),
    );
    computed.insert(labels::LISTENER_NAME.into(), al.name_any());
    let computed = merge_labels(Some(al.labels()), Some(&computed), excluded);
    merge_labels(extra, Some(&computed), excluded)
}

/// The listener Role (ARS namespace): patch its EphemeralRunnerSet, and EphemeralRunners and
/// their status; read and watch its AutoscalingRunnerSet, for the runner bounds; nothing else.
pub fn role(al: &AutoscalingListener, owner: &Owner<'_>, excluded: &[String]) -> Role {
    let meta = al.spec.role_metadata.clone().unwrap_or_default();
    let ers = al
        .spec
        .ephemeral_runner_set_name
        .clone()
        .unwrap_or_default();
    let rules = vec![
        PolicyRule {
            api_groups: Some(vec![crate::crd::GROUP.into()]),
            resources: Some(vec!["ephemeralrunnersets".into()]),
            resource_names: Some(vec![ers]),
            verbs: vec!["patch".into()],
            ..Default::default()
        },
        PolicyRule {
            api_groups: Some(vec![crate::crd::GROUP.into()]),
            resources: Some(vec![
                "ephemeralrunners".into(),
                "ephemeralrunners/status".into(),
            ]),
            verbs: vec!["patch".into()],
            ..Default::default()
        },
        PolicyRule {
            api_groups: Some(vec![crate::crd::GROUP.into()]),
            resources: Some(vec!["autoscalingrunnersets".into()]),
            resource_names: Some(vec![owner.name.into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        },
    ];
    Role {
        metadata: ObjectMeta {
            name: Some(al.name_any()),
            namespace: Some(owner.namespace.into()),
            labels: Some(rbac_labels(al, owner, meta.labels.as_ref(), excluded)),
            annotations: Some(with_hash(meta.annotations.as_ref(), integrity_hash(&rules))),
            ..Default::default()
        },
        rules: Some(rules),
    }
}

/// The listener RoleBinding (ARS namespace).
pub fn role_binding(
    al: &AutoscalingListener,
    owner: &Owner<'_>,
    excluded: &[String],
) -> RoleBinding {
    let meta = al.spec.role_binding_metadata.clone().unwrap_or_default();
    let role_ref = RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "Role".into(),
        name: al.name_any(),
    };
    let subjects = vec![Subject {
        kind: "ServiceAccount".into(),
        name: al.name_any(),
        namespace: al.namespace(),
        ..Default::default()
    }];
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(al.name_any()),
            namespace: Some(owner.namespace.into()),
            labels: Some(rbac_labels(al, owner, meta.labels.as_ref(), excluded)),
            annotations: Some(with_hash(
                meta.annotations.as_ref(),
                integrity_hash(&(&role_ref, &subjects)),
            )),
            ..Default::default()
        },
        role_ref,
        subjects: Some(subjects),
    }
}

/// The `<al>-config` Secret holding `config.json`.
pub fn config_secret(al: &AutoscalingListener, config_json: String, excluded: &[String]) -> Secret {
    let meta = al.spec.config_secret_metadata.clone().unwrap_or_default();
    let data = BTreeMap::from([(
        listener_config::FILE_NAME.to_owned(),
        ByteString(config_json.into_bytes()),
    )]);
    Secret {
        metadata: ObjectMeta {
            name: Some(listener_config_secret_name(&al.name_any())),
            namespace: al.namespace(),
            labels: Some(merge_labels(meta.labels.as_ref(), None, excluded)),
            annotations: Some(with_hash(meta.annotations.as_ref(), integrity_hash(&data))),
            owner_references: al.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}

/// The `<al>-proxy` Secret with `http_proxy`, `https_proxy`, `no_proxy`.
pub fn proxy_secret(al: &AutoscalingListener, owner: &Owner<'_>, proxy: &ProxySettings) -> Secret {
    let value = |v: &Option<secrecy::SecretString>| {
        ByteString(
            v.as_ref()
                .map(|s| s.expose_secret().as_bytes().to_vec())
                .unwrap_or_default(),
        )
    };
    let data = BTreeMap::from([
        ("http_proxy".to_owned(), value(&proxy.http)),
        ("https_proxy".to_owned(), value(&proxy.https)),
        (
            "no_proxy".to_owned(),
            ByteString(proxy.no_proxy.join(",").into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(listener_proxy_secret_name(&al.name_any())),
            namespace: al.namespace(),
            labels: Some(scale_set_labels(owner)),
            annotations: Some(with_hash(None, integrity_hash(&data))),
            owner_references: al.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    }
}
