//! The JIT Secret and the runner Pod of an EphemeralRunner
//! (docs/architecture.md#jit-config-and-pod): pure builders and the JIT Secret reader.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Pod, PodSpec, Secret, SecretKeySelector};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use secrecy::ExposeSecret;

use crate::crd::EphemeralRunner;
use crate::github::JitConfig;
use crate::meta::{Map, integrity_hash, merge_annotations, merge_labels};
use crate::names::{RUNNER_CONTAINER, annotations, labels};

/// Key of the encoded JIT config in the JIT Secret.
pub const JIT_TOKEN_KEY: &str = "jitToken";
/// Env var of the runner container that receives the JIT config.
pub const JIT_ENV: &str = "ACTIONS_RUNNER_INPUT_JITCONFIG";
/// Env var that marks kubernetes container mode (container hooks).
pub const HOOKS_ENV: &str = "ACTIONS_RUNNER_CONTAINER_HOOKS";

/// The registration recorded in a JIT Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// `runnerId`.
    pub runner_id: i64,
    /// `runnerName`.
    pub runner_name: String,
    /// `scaleSetId`.
    pub scale_set_id: i64,
}

fn owner_meta(er: &EphemeralRunner) -> ObjectMeta {
    ObjectMeta {
        name: Some(er.name_any()),
        namespace: er.namespace(),
        owner_references: er.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The JIT Secret: `jitToken`, `runnerName`, `runnerId`, `scaleSetId`, with the metadata of
/// `spec.ephemeralRunnerConfigSecretMetadata`, owned by the runner.
pub fn jit_secret(er: &EphemeralRunner, jit: &JitConfig, excluded_prefixes: &[String]) -> Secret {
    let meta = er
        .spec
        .ephemeral_runner_config_secret_metadata
        .clone()
        .unwrap_or_default();
    let text = |s: String| ByteString(s.into_bytes());
    let data = BTreeMap::from([
        (
            JIT_TOKEN_KEY.to_owned(),
            text(jit.encoded_jit_config.expose_secret().to_owned()),
        ),
        ("runnerName".to_owned(), text(jit.runner.name.clone())),
        ("runnerId".to_owned(), text(jit.runner.id.to_string())),
        (
            "scaleSetId".to_owned(),
            text(jit.runner.runner_scale_set_id.to_string()),
        ),
    ]);
    let labels = merge_labels(meta.labels.as_ref(), None, excluded_prefixes);
    let annotations = merge_annotations(meta.annotations.as_ref(), None);
    Secret {
        metadata: ObjectMeta {
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..owner_meta(er)
        },
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// Reads the registration from a JIT Secret; the error names the key that is wrong.
pub fn registration(secret: &Secret) -> Result<Registration, String> {
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).trim().to_owned())
            .unwrap_or_default()
    };
    let number = |key: &str| {
        let raw = text(key);
        raw.parse::<i64>()
            .map_err(|_| format!("key {key} of the JIT Secret is {raw:?}, not an integer"))
    };
    let runner_id = number("runnerId")?;
    if runner_id <= 0 {
        return Err(format!(
            "key runnerId of the JIT Secret is {runner_id}, not a runner id"
        ));
    }
    Ok(Registration {
        runner_id,
        runner_name: text("runnerName"),
        scale_set_id: number("scaleSetId").unwrap_or_default(),
    })
}

/// Env vars appended to the runner container, in ARC's order.
pub fn runner_env(er: &EphemeralRunner, build_version: &str) -> Vec<EnvVar> {
    let from_secret = |name: &str, secret: &str, key: &str| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let plain = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        ..EnvVar::default()
    };
    let mut env = vec![
        from_secret(JIT_ENV, &er.name_any(), JIT_TOKEN_KEY),
        plain(
            "GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT",
            format!("actions-runner-controller/{build_version}"),
        ),
        plain(
            "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE",
            "1".into(),
        ),
    ];
    if let Some(secret) = er
        .spec
        .proxy_secret_ref
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        let proxy = er.spec.proxy.clone().unwrap_or_default();
        if proxy.http.is_some() {
            env.push(from_secret("http_proxy", secret, "http_proxy"));
        }
        if proxy.https.is_some() {
            env.push(from_secret("https_proxy", secret, "https_proxy"));
        }
        if proxy.no_proxy.as_ref().is_some_and(|n| !n.is_empty()) {
            env.push(from_secret("no_proxy", secret, "no_proxy"));
        }
    }
    env
}

/// The registration a runner pod was created for, from its annotations: runner id and name.
pub fn pod_registration(pod: &Pod) -> Option<(i64, String)> {
    let annotations = pod.metadata.annotations.as_ref()?;
    let id = annotations
        .get(annotations::RUNNER_ID)?
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)?;
    let name = annotations
        .get(annotations::RUNNER_NAME)
        .cloned()
        .unwrap_or_default();
    Some((id, name))
}

/// The id of the registration of runner `er`: `status.runnerId`, else the one its pod carries,
/// else the one in its JIT Secret; 0 when none of them says.
pub fn registered_id(er: &EphemeralRunner, pod: Option<&Pod>, secret: Option<&Secret>) -> i64 {
    er.status
        .as_ref()
        .map(|s| s.runner_id)
        .filter(|id| *id > 0)
        .or_else(|| pod.and_then(pod_registration).map(|(id, _)| id))
        .or_else(|| {
            secret
                .and_then(|s| registration(s).ok())
                .map(|r| r.runner_id)
        })
        .unwrap_or_default()
}

/// The runner pod: the template verbatim plus ARC's labels and annotations and the runner env.
/// Fails when the template has no container named `runner`.
pub fn runner_pod(
    er: &EphemeralRunner,
    registration: &Registration,
    build_version: &str,
) -> Result<Pod, String> {
    let template_meta = er.spec.pod_template.metadata.clone().unwrap_or_default();
    let mut labels: Map = merge_labels(Some(er.labels()), template_meta.labels.as_ref(), &[]);
    labels.insert(labels::EPHEMERAL_RUNNER.into(), "True".into());
    labels.insert(
        labels::POD_TEMPLATE_HASH.into(),
        integrity_hash(&(
            registration.runner_id,
            &registration.runner_name,
            registration.scale_set_id,
        )),
    );
    let mut annotations =
        merge_annotations(Some(er.annotations()), template_meta.annotations.as_ref());
    annotations.insert(
        annotations::RUNNER_ID.into(),
        registration.runner_id.to_string(),
    );
    annotations.insert(
        annotations::RUNNER_NAME.into(),
        registration.runner_name.clone(),
    );
    let mut spec: PodSpec = er.spec.pod_template.spec.clone().unwrap_or_default();
    let runner = spec
        .containers
        .iter_mut()
        .find(|c| c.name == RUNNER_CONTAINER)
        .ok_or_else(|| {
            format!(
                "the pod template has no container named {RUNNER_CONTAINER:?}; add one with the runner image under spec.template.spec.containers"
            )
        })?;
    runner
        .env
        .get_or_insert_with(Vec::new)
        .extend(runner_env(er, build_version));
    Ok(Pod {
        metadata: ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..owner_meta(er)
        },
        spec: Some(spec),
        status: None,
    })
}

/// Gives the `runner` container `image` when the template left its image empty
/// (`--runner-image`).
pub fn fill_default_image(pod: &mut Pod, image: &str) {
    let runner = pod
        .spec
        .as_mut()
        .and_then(|s| s.containers.iter_mut().find(|c| c.name == RUNNER_CONTAINER));
    if let Some(runner) = runner
        && runner.image.as_deref().is_none_or(str::is_empty)
    {
        runner.image = Some(image.to_owned());
    }
}

/// `workingDir` of the runner container in the template: the JIT work folder.
pub fn work_folder(er: &EphemeralRunner) -> String {
    let dir = er
        .spec
        .pod_template
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == RUNNER_CONTAINER))
        .and_then(|c| c.working_dir.as_deref());
    scaleset_core::ephemeral_runner::jit_work_folder(dir)
}

/// Whether the runner container uses container hooks (kubernetes mode): its job pods and
/// Secrets, labelled `runner-pod=<runner>`, are cleaned up with the runner.
pub fn uses_container_hooks(er: &EphemeralRunner) -> bool {
    er.spec
        .pod_template
        .spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == RUNNER_CONTAINER))
        .and_then(|c| c.env.as_ref())
        .is_some_and(|env| env.iter().any(|e| e.name == HOOKS_ENV))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::RunnerInfo;
    use secrecy::SecretString;
    use serde_json::json;

    fn runner(template: serde_json::Value) -> EphemeralRunner {
        let mut er: EphemeralRunner = serde_json::from_value(json!({
            "apiVersion": "actions.github.com/v1alpha1",
            "kind": "EphemeralRunner",
            "metadata": {
                "name": "set-runner-abcde", "namespace": "ns", "uid": "u-1",
                "labels": {"a": "er", "b": "er"},
                "annotations": {"actions.github.com/patch-id": "3"}
            },
            "spec": {
                "githubConfigUrl": "https://github.com/org",
                "githubConfigSecret": "creds",
                "runnerScaleSetId": 9,
                "proxySecretRef": "set-proxy",
                "proxy": {"https": {"url": "http://proxy:3128"}, "noProxy": ["x"]},
                "ephemeralRunnerConfigSecretMetadata": {"labels": {"s": "1"}}
            }
        }))
        .expect("er json");
        er.spec.pod_template = serde_json::from_value(template).expect("template json");
        er
    }

    fn sample() -> Registration {
        Registration {
            runner_id: 5,
            runner_name: "set-runner-abcde".into(),
            scale_set_id: 9,
        }
    }

    #[test]
    fn default_image_fills_only_an_empty_runner_image() {
        let er = runner(json!({"spec": {"containers": [
            {"name": "dind", "image": ""},
            {"name": "runner"}
        ]}}));
        let mut pod = runner_pod(&er, &sample(), "dev").expect("pod");
        fill_default_image(&mut pod, "ghcr.io/actions/actions-runner:2");
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!(spec.containers[0].image.as_deref(), Some(""));
        assert_eq!(
            spec.containers[1].image.as_deref(),
            Some("ghcr.io/actions/actions-runner:2")
        );
        let er = runner(json!({"spec": {"containers": [{"name": "runner", "image": "mine:1"}]}}));
        let mut pod = runner_pod(&er, &sample(), "dev").expect("pod");
        fill_default_image(&mut pod, "other");
        assert_eq!(
            pod.spec.unwrap_or_default().containers[0].image.as_deref(),
            Some("mine:1")
        );
    }

    #[test]
    fn pod_carries_template_labels_env_and_owner() {
        let er = runner(json!({
            "metadata": {"labels": {"b": "tpl"}, "annotations": {"t": "1"}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "dind", "image": "docker:dind"},
                {"name": "runner", "image": "runner:1", "workingDir": "/w",
                 "env": [{"name": "ACTIONS_RUNNER_CONTAINER_HOOKS", "value": "/k8s/index.js"}]}
            ]}
        }));
        let pod = runner_pod(&er, &sample(), "0.1.0").expect("pod");
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("b").map(String::as_str), Some("tpl"));
        assert_eq!(labels.get("a").map(String::as_str), Some("er"));
        assert_eq!(
            labels.get(labels::EPHEMERAL_RUNNER).map(String::as_str),
            Some("True")
        );
        assert!(labels.contains_key(labels::POD_TEMPLATE_HASH));
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.len(), 4, "{annotations:?}");
        let registration = pod_registration(&pod).expect("registration");
        assert_eq!(registration, (sample().runner_id, sample().runner_name));
        let owner = &pod.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u-1", Some(true)));
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert!(
            spec.containers[0].env.is_none(),
            "only the runner container changes"
        );
        let names: Vec<_> = spec.containers[1]
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(
            names,
            [
                HOOKS_ENV,
                JIT_ENV,
                "GITHUB_ACTIONS_RUNNER_EXTRA_USER_AGENT",
                "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE",
                "https_proxy",
                "no_proxy"
            ]
        );
        let jit = &spec.containers[1].env.as_ref().expect("env")[1];
        let key = jit
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        assert_eq!(
            key.map(|k| (k.name.as_str(), k.key.as_str())),
            Some(("set-runner-abcde", "jitToken"))
        );
        assert_eq!(work_folder(&er), "/w");
        assert!(uses_container_hooks(&er));
    }

    #[test]
    fn pod_without_runner_container_is_refused() {
        let er = runner(json!({"spec": {"containers": [{"name": "main", "image": "x"}]}}));
        let err = runner_pod(&er, &sample(), "dev").expect_err("no runner container");
        assert!(err.contains("\"runner\""), "{err}");
        assert!(!uses_container_hooks(&er));
        assert_eq!(work_folder(&er), "");
    }

    #[test]
    fn secret_round_trips_the_registration() {
        let er = runner(json!({"spec": {"containers": []}}));
        let jit = JitConfig {
            runner: RunnerInfo {
                id: 5,
                name: "set-runner-abcde".into(),
                runner_scale_set_id: 9,
            },
            encoded_jit_config: SecretString::from("token"),
        };
        let secret = jit_secret(&er, &jit, &[]);
        assert_eq!(registration(&secret), Ok(sample()));
        assert_eq!(
            secret
                .metadata
                .labels
                .clone()
                .unwrap_or_default()
                .get("s")
                .map(String::as_str),
            Some("1")
        );
        let mut broken = secret.clone();
        broken
            .data
            .get_or_insert_with(BTreeMap::new)
            .insert("runnerId".into(), ByteString(b"x".to_vec()));
        assert!(
            registration(&broken)
                .expect_err("bad id")
                .contains("runnerId")
        );
    }
}
