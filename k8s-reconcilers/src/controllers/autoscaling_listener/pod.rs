//! The listener pod and the `listenerTemplate` merge (docs/architecture.md#listener-children).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, Pod, PodSpec, PodTemplateSpec,
    Probe, SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use crate::crd::AutoscalingListener;
use crate::listener_config;
use crate::meta::integrity_hash;
use crate::names::{
    LISTENER_CONTAINER, annotations, listener_config_secret_name, listener_proxy_secret_name,
};
use crate::options::ManagerOptions;

/// Where the config Secret is mounted.
pub const CONFIG_DIR: &str = "/etc/gha-listener";

/// Port of the listener's `/healthz` and `/readyz` endpoints.
pub const HEALTH_PORT: i32 = 8081;

/// The listener's `health_addr` when the controller manages its probes.
pub const HEALTH_ADDR: &str = "0.0.0.0:8081";

/// Whether the `listenerTemplate`'s listener container brings probes of its own; then the
/// controller leaves the listener's health endpoint and probes to the user.
pub fn template_sets_probes(al: &AutoscalingListener) -> bool {
    al.spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .is_some_and(|spec| {
            spec.containers.iter().any(|c| {
                c.name == LISTENER_CONTAINER
                    && (c.liveness_probe.is_some()
                        || c.readiness_probe.is_some()
                        || c.startup_probe.is_some())
            })
        })
}

/// The `health_addr` written into `config.json`: [`HEALTH_ADDR`], or empty (off) when the
/// template brings its own probes.
pub fn health_addr(al: &AutoscalingListener) -> &'static str {
    if template_sets_probes(al) {
        ""
    } else {
        HEALTH_ADDR
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(HEALTH_PORT),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// Builds the listener pod. `dependencies` are the integrity hashes of the objects the pod
/// depends on (config Secret, RBAC); any change gives the pod a new hash, so it is replaced.
pub fn listener_pod(
    al: &AutoscalingListener,
    options: &ManagerOptions,
    dependencies: &[&str],
) -> Pod {
    let name = al.name_any();
    let mut env = vec![EnvVar {
        name: listener_config::PATH_ENV.into(),
        value: Some(format!("{CONFIG_DIR}/{}", listener_config::FILE_NAME)),
        ..Default::default()
    }];
    if let Some(proxy) = &al.spec.proxy {
        let secret = listener_proxy_secret_name(&name);
        let wanted = [
            (
                "http_proxy",
                proxy.http.as_ref().and_then(|h| h.url.as_ref()).is_some(),
            ),
            (
                "https_proxy",
                proxy.https.as_ref().and_then(|h| h.url.as_ref()).is_some(),
            ),
            (
                "no_proxy",
                proxy.no_proxy.as_ref().is_some_and(|n| !n.is_empty()),
            ),
        ];
        for (key, set) in wanted {
            if set {
                env.push(EnvVar {
                    name: key.into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.clone(),
                            key: key.into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
    }
    let probes = !template_sets_probes(al);
    let mut ports: Vec<ContainerPort> = metrics_port(&options.listener_metrics_addr)
        .map(|port| ContainerPort {
            name: Some("metrics".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        })
        .into_iter()
        .collect();
    if probes {
        ports.push(ContainerPort {
            name: Some("health".into()),
            container_port: HEALTH_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        });
    }
    let ports = (!ports.is_empty()).then_some(ports);
    let container = Container {
        name: LISTENER_CONTAINER.into(),
        image: al.spec.image.clone(),
        command: Some(vec![options.listener_entrypoint.clone()]),
        env: Some(env),
        ports,
        liveness_probe: probes.then(|| http_probe("/healthz", 10, 3)),
        readiness_probe: probes.then(|| http_probe("/readyz", 5, 3)),
        volume_mounts: Some(vec![VolumeMount {
            name: "listener-config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let spec = PodSpec {
        service_account_name: Some(name.clone()),
        node_selector: Some(BTreeMap::from([(
            "kubernetes.io/os".to_owned(),
            "linux".to_owned(),
        )])),
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(60),
        image_pull_secrets: al.spec.image_pull_secrets.clone(),
        volumes: Some(vec![Volume {
            name: "listener-config".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(listener_config_secret_name(&name)),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        containers: vec![container],
        ..Default::default()
    };
    let al_hash = al
        .annotations()
        .get(annotations::INTEGRITY_HASH)
        .cloned()
        .unwrap_or_else(|| integrity_hash(&al.spec.without_bounds()));
    let hash = integrity_hash(&(
        &spec,
        &al_hash,
        dependencies,
        &options.listener_metrics_addr,
        &options.listener_metrics_endpoint,
    ));
    let mut pod = Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: al.namespace(),
            labels: Some(al.labels().clone()),
            annotations: Some(BTreeMap::from([(
                annotations::INTEGRITY_HASH.to_owned(),
                hash,
            )])),
            owner_references: al.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    };
    if let Some(template) = &al.spec.template {
        merge_template(&mut pod, template);
    }
    pod
}

/// Port of `--listener-metrics-addr` (`:8080` gives 8080); `None` when metrics are off.
fn metrics_port(addr: &str) -> Option<i32> {
    if addr.is_empty() {
        return None;
    }
    addr.rsplit(':').next()?.parse().ok()
}

/// ARC's listener template merge.
pub fn merge_template(pod: &mut Pod, template: &PodTemplateSpec) {
    if let Some(meta) = &template.metadata {
        for (src, dst) in [
            (&meta.labels, &mut pod.metadata.labels),
            (&meta.annotations, &mut pod.metadata.annotations),
        ] {
            if let Some(src) = src {
                let dst = dst.get_or_insert_with(BTreeMap::new);
                for (k, v) in src {
                    dst.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    let (Some(t), Some(spec)) = (&template.spec, pod.spec.as_mut()) else {
        return;
    };
    for tc in &t.containers {
        match spec
            .containers
            .iter_mut()
            .find(|c| c.name == tc.name && tc.name == LISTENER_CONTAINER)
        {
            Some(base) => merge_container(base, tc),
            None => spec.containers.push(tc.clone()),
        }
    }
    if let Some(p) = t.restart_policy.as_ref().filter(|p| !p.is_empty()) {
        spec.restart_policy = Some(p.clone());
    }
    if t.image_pull_secrets.is_some() {
        spec.image_pull_secrets = t.image_pull_secrets.clone();
    }
    if t.node_selector.is_some() {
        spec.node_selector = t.node_selector.clone();
    }
    if let Some(v) = &t.volumes {
        spec.volumes
            .get_or_insert_with(Vec::new)
            .extend(v.iter().cloned());
    }
    spec.init_containers = t.init_containers.clone();
    spec.ephemeral_containers = t.ephemeral_containers.clone();
    spec.termination_grace_period_seconds = t.termination_grace_period_seconds;
    spec.active_deadline_seconds = t.active_deadline_seconds;
    spec.dns_policy = t.dns_policy.clone();
    spec.node_name = t.node_name.clone();
    spec.host_network = t.host_network;
    spec.host_pid = t.host_pid;
    spec.host_ipc = t.host_ipc;
    spec.share_process_namespace = t.share_process_namespace;
    spec.security_context = t.security_context.clone();
    spec.hostname = t.hostname.clone();
    spec.subdomain = t.subdomain.clone();
    spec.affinity = t.affinity.clone();
    spec.scheduler_name = t.scheduler_name.clone();
    spec.tolerations = t.tolerations.clone();
    spec.host_aliases = t.host_aliases.clone();
    spec.priority_class_name = t.priority_class_name.clone();
    spec.priority = t.priority;
    spec.dns_config = t.dns_config.clone();
    spec.readiness_gates = t.readiness_gates.clone();
    spec.runtime_class_name = t.runtime_class_name.clone();
    spec.enable_service_links = t.enable_service_links;
    spec.preemption_policy = t.preemption_policy.clone();
    spec.overhead = t.overhead.clone();
    spec.topology_spread_constraints = t.topology_spread_constraints.clone();
    spec.set_hostname_as_fqdn = t.set_hostname_as_fqdn;
    spec.os = t.os.clone();
    spec.host_users = t.host_users;
    spec.scheduling_gates = t.scheduling_gates.clone();
    spec.resource_claims = t.resource_claims.clone();
}

fn merge_container(base: &mut Container, t: &Container) {
    if let Some(image) = t.image.as_ref().filter(|i| !i.is_empty()) {
        base.image = Some(image.clone());
    }
    if let Some(command) = t.command.as_ref().filter(|c| !c.is_empty()) {
        base.command = Some(command.clone());
    }
    fn append<T: Clone>(dst: &mut Option<Vec<T>>, src: &Option<Vec<T>>) {
        if let Some(src) = src {
            dst.get_or_insert_with(Vec::new).extend(src.iter().cloned());
        }
    }
    append(&mut base.env, &t.env);
    append(&mut base.args, &t.args);
    append(&mut base.ports, &t.ports);
    append(&mut base.env_from, &t.env_from);
    append(&mut base.volume_mounts, &t.volume_mounts);
    append(&mut base.volume_devices, &t.volume_devices);
    base.image_pull_policy = t.image_pull_policy.clone();
    base.working_dir = t.working_dir.clone();
    base.resources = t.resources.clone();
    if t.liveness_probe.is_some() || t.readiness_probe.is_some() || t.startup_probe.is_some() {
        base.liveness_probe = t.liveness_probe.clone();
        base.readiness_probe = t.readiness_probe.clone();
        base.startup_probe = t.startup_probe.clone();
    }
    base.lifecycle = t.lifecycle.clone();
    base.termination_message_path = t.termination_message_path.clone();
    base.termination_message_policy = t.termination_message_policy.clone();
    base.security_context = t.security_context.clone();
    base.resize_policy = t.resize_policy.clone();
    base.restart_policy = t.restart_policy.clone();
    base.stdin = t.stdin;
    base.stdin_once = t.stdin_once;
    base.tty = t.tty;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_merge_rules() {
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "listener".into(),
                    image: Some("base".into()),
                    env: Some(vec![EnvVar {
                        name: "A".into(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                node_selector: Some(BTreeMap::from([(
                    "kubernetes.io/os".into(),
                    "linux".into(),
                )])),
                termination_grace_period_seconds: Some(60),
                ..Default::default()
            }),
            ..Default::default()
        };
        let template = PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        name: "listener".into(),
                        env: Some(vec![EnvVar {
                            name: "B".into(),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    },
                    Container {
                        name: "sidecar".into(),
                        ..Default::default()
                    },
                ],
                node_selector: Some(BTreeMap::new()),
                ..Default::default()
            }),
        };
        merge_template(&mut pod, &template);
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.containers.len(), 2);
        assert_eq!(spec.containers[0].image.as_deref(), Some("base"));
        let env: Vec<&str> = spec.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(env, ["A", "B"]);
        assert_eq!(
            spec.node_selector,
            Some(BTreeMap::new()),
            "an empty nodeSelector removes the default"
        );
        assert_eq!(
            spec.termination_grace_period_seconds, None,
            "replaced unconditionally"
        );
    }

    #[test]
    fn metrics_port_from_addr() {
        assert_eq!(metrics_port(":8080"), Some(8080));
        assert_eq!(metrics_port("0.0.0.0:9090"), Some(9090));
        assert_eq!(metrics_port(""), None);
    }
}
