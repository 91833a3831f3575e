//! End-to-end set-ups of ARC's e2e suite: single-namespace watch, custom labels, minRunners,
//! scale set update, and the dind and kubernetes container modes (runner pods as the chart
//! renders them, run by the node simulator). Each runs jobs through the whole system and ends
//! with the leak check.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use system::{ScaleSetSpec, System, SystemOptions, WAIT, wait_for};

async fn start(name: &str, edit: impl FnOnce(&mut SystemOptions)) -> System {
    let mut options = SystemOptions::new(name);
    edit(&mut options);
    System::shared(options).await.expect("system")
}

async fn finish(sys: System, outcome: anyhow::Result<()>) {
    if let Err(e) = sys.finish(outcome).await {
        panic!("{e:#}");
    }
}

fn containers(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.clone())
        .unwrap_or_default();
    let main = spec.map(|s| s.containers.clone()).unwrap_or_default();
    init.iter().chain(&main).map(|c| c.name.clone()).collect()
}

#[tokio::test]
async fn single_namespace_watch() {
    let sys = start("e2e-single", |o| o.single_namespace = true).await;
    let outcome = async {
        let deployment = sys.manager_pods().await?;
        let args = deployment
            .first()
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.args.clone())
            .unwrap_or_default();
        anyhow::ensure!(
            args.iter().any(|a| a.contains(sys.runner_namespace())),
            "the manager was not started with --watch-single-namespace: {args:?}"
        );
        let set = sys
            .install_scale_set(ScaleSetSpec::new("arc-single"))
            .await?;
        let jobs = sys.run_jobs(&set, 2, Duration::from_secs(1), 0).await?;
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    finish(sys, outcome).await;
}

#[tokio::test]
async fn custom_labels_route_jobs() {
    let sys = start("e2e-labels", |_| {}).await;
    let outcome = async {
        let set = sys
            .install_scale_set(
                ScaleSetSpec::new("arc-labels")
                    .values(json!({ "scaleSetLabels": ["linux", "gpu-a100"] })),
            )
            .await?;
        let labels = sys
            .emulator()
            .snapshot()
            .scale_set(set.id)
            .map(|s| s.labels.clone())
            .unwrap_or_default();
        for l in ["arc-labels", "linux", "gpu-a100"] {
            anyhow::ensure!(
                labels.iter().any(|x| x == l),
                "scale set labels {labels:?} lack {l}"
            );
        }
        let jobs = sys.queue_labeled(&["linux", "gpu-a100"], 2, Duration::from_secs(1));
        sys.wait_jobs_completed(&jobs, WAIT).await?;
        sys.wait_runners(&set, 0, WAIT).await?;
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    finish(sys, outcome).await;
}

#[tokio::test]
async fn min_runners_are_kept_idle() {
    let sys = start("e2e-min", |_| {}).await;
    let outcome = async {
        let mut set = sys
            .install_scale_set(ScaleSetSpec::new("arc-min").values(json!({ "minRunners": 2 })))
            .await?;
        sys.wait_runners(&set, 2, WAIT).await?;
        let mut jobs = sys.run_jobs(&set, 3, Duration::from_secs(1), 2).await?;
        // New bounds reach the running listener: no new listener pod, no new session.
        let listener = sys.listener_pod(&set).await?.and_then(|p| p.metadata.uid);
        anyhow::ensure!(listener.is_some(), "no listener pod");
        sys.upgrade_scale_set(&mut set, json!({ "minRunners": 3, "maxRunners": 5 }))
            .await?;
        sys.wait_runners(&set, 3, WAIT).await?;
        jobs.extend(sys.run_jobs(&set, 2, Duration::from_secs(1), 3).await?);
        anyhow::ensure!(
            sys.listener_pod(&set).await?.and_then(|p| p.metadata.uid) == listener,
            "new minRunners replaced the listener pod"
        );
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    finish(sys, outcome).await;
}

#[tokio::test]
async fn scale_set_update_reaches_new_runners() {
    let sys = start("e2e-update", |_| {}).await;
    let outcome = async {
        let mut set = sys
            .install_scale_set(ScaleSetSpec::new("arc-update"))
            .await?;
        let mut jobs = sys.run_jobs(&set, 1, Duration::from_secs(1), 0).await?;
        sys.upgrade_scale_set(
            &mut set,
            json!({
                "minRunners": 1,
                "template": { "metadata": { "labels": { "revision": "two" } } },
            }),
        )
        .await?;
        wait_for(WAIT, "an idle runner pod of the new template", || async {
            Ok(sys.runner_pods(&set).await?.iter().any(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .is_some_and(|l| l.get("revision").map(String::as_str) == Some("two"))
            }))
        })
        .await?;
        jobs.extend(sys.run_jobs(&set, 2, Duration::from_secs(1), 1).await?);
        for pod in sys.runner_pods(&set).await? {
            let revision = pod.metadata.labels.as_ref().and_then(|l| l.get("revision"));
            anyhow::ensure!(
                revision.map(String::as_str) == Some("two"),
                "runner pod {:?} after the update has the old template",
                pod.metadata.name
            );
        }
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    finish(sys, outcome).await;
}

async fn container_mode(sys: System, name: &str, mode: &str, expected: &[&str]) {
    container_mode_checked(sys, name, mode, expected, |_, _| async { Ok(()) }).await;
}

/// [`container_mode`] with `check` run on the first runner pod (with an admin client) before the
/// jobs.
async fn container_mode_checked<F, Fut>(
    sys: System,
    name: &str,
    mode: &str,
    expected: &[&str],
    check: F,
) where
    F: FnOnce(kube::Client, Pod) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let outcome = async {
        let set = sys
            .install_scale_set(
                ScaleSetSpec::new(name)
                    .values(json!({ "minRunners": 1, "containerMode": { "type": mode } })),
            )
            .await?;
        sys.wait_runners(&set, 1, WAIT).await?;
        let pods = sys.runner_pods(&set).await?;
        let pod = pods
            .first()
            .ok_or_else(|| anyhow::anyhow!("no runner pod"))?;
        let names = containers(pod);
        for want in expected {
            anyhow::ensure!(
                names.iter().any(|n| n == want),
                "{mode} runner pod lacks container {want}: {names:?}"
            );
        }
        check(sys.client(), pod.clone()).await?;
        let jobs = sys.run_jobs(&set, 2, Duration::from_secs(1), 1).await?;
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    finish(sys, outcome).await;
}

/// On Kubernetes 1.29 and later the chart renders `dind` as a native sidecar: an init container
/// with `restartPolicy: Always` that runs beside the runner; jobs then complete on those pods.
#[tokio::test]
async fn dind_container_mode() {
    let sys = start("e2e-dind", |_| {}).await;
    container_mode_checked(
        sys,
        "e2e-dind",
        "dind",
        &["init-dind-externals", "dind", "runner"],
        |client, pod| async move {
            let spec = pod.spec.clone().unwrap_or_default();
            let dind = spec
                .init_containers
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.name == "dind")
                .ok_or_else(|| anyhow::anyhow!("dind is not an init container"))?;
            anyhow::ensure!(
                dind.restart_policy.as_deref() == Some("Always"),
                "dind is not a native sidecar: restartPolicy {:?}",
                dind.restart_policy
            );
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let pods: kube::Api<Pod> = kube::Api::namespaced(client, &namespace);
            wait_for(
                WAIT,
                "the dind sidecar running beside the runner",
                || async {
                    let pod = pods.get(&name).await?;
                    let status = pod.status.unwrap_or_default();
                    let running =
                        |list: Option<Vec<k8s_openapi::api::core::v1::ContainerStatus>>,
                         container: &str| {
                            list.unwrap_or_default().iter().any(|c| {
                                c.name == container
                                    && c.state.as_ref().is_some_and(|s| s.running.is_some())
                            })
                        };
                    Ok(running(status.init_container_statuses, "dind")
                        && running(status.container_statuses, "runner"))
                },
            )
            .await
        },
    )
    .await;
}

/// The work volume of kubernetes mode is a generic ephemeral volume (the scheduler and node
/// simulator treat it as an empty directory).
#[tokio::test]
async fn kubernetes_container_mode() {
    let sys = start("e2e-kube", |_| {}).await;
    container_mode(sys, "e2e-kube", "kubernetes", &["runner"]).await;
}

#[tokio::test]
async fn kubernetes_novolume_container_mode() {
    let sys = start("e2e-kubenv", |_| {}).await;
    container_mode(sys, "e2e-kubenv", "kubernetes-novolume", &["runner"]).await;
}

/// Three scale sets at once, each with its own listener: in podman every listener pod has its
/// own network namespace and address, so all three serve their health and metrics ports on the
/// same port numbers, each at its own `podIP`, and each set runs its own jobs.
#[tokio::test]
async fn three_scale_sets_each_with_its_own_listener() {
    let sys = start("e2e-three", |_| {}).await;
    let outcome = async {
        let mut sets = Vec::new();
        for name in ["arc-three-a", "arc-three-b", "arc-three-c"] {
            sets.push(sys.install_scale_set(ScaleSetSpec::new(name)).await?);
        }
        let (mut listeners, mut addresses) = (Vec::new(), Vec::new());
        for set in &sets {
            let pod = sys
                .listener_pod(set)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no listener pod for {}", set.name))?;
            listeners.push(pod.metadata.uid.clone());
            addresses.push(pod_ip(&pod)?);
        }
        // Three addresses of the pod network, each answering on the listener's health port.
        let (subnet, prefix) = system::POD_SUBNET;
        for (set, address) in sets.iter().zip(&addresses) {
            let mask = u32::MAX << (32 - prefix);
            anyhow::ensure!(
                u32::from(*address) & mask == u32::from(subnet),
                "the listener of {} has podIP {address}, outside {subnet}/{prefix}",
                set.name
            );
            let (status, body) = testbed::http_get((*address, 8081).into(), "/healthz").await?;
            anyhow::ensure!(
                status == 200,
                "GET http://{address}:8081/healthz (the listener of {}) answered {status}: {body}",
                set.name
            );
        }
        let distinct: std::collections::BTreeSet<_> = addresses.iter().collect();
        anyhow::ensure!(
            distinct.len() == 3,
            "the listeners share addresses: {addresses:?}"
        );
        let jobs: Vec<Vec<i64>> = sets
            .iter()
            .map(|set| sys.queue_jobs(set, 2, Duration::from_secs(1)))
            .collect();
        for (set, jobs) in sets.iter().zip(&jobs) {
            sys.wait_jobs_completed(jobs, WAIT).await?;
            sys.wait_runners(set, 0, WAIT).await?;
        }
        // The listeners that took the jobs are the first ones: none crash-looped.
        for (set, uid) in sets.iter().zip(&listeners) {
            let pod = sys.listener_pod(set).await?;
            let restarts = pod
                .as_ref()
                .filter(|p| p.metadata.uid == *uid)
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.iter().find(|c| c.name == "listener"))
                .map(|c| c.restart_count);
            anyhow::ensure!(
                restarts == Some(0),
                "the listener of {} was replaced or restarted ({restarts:?})",
                set.name
            );
        }
        // The leak check looks at the whole runner namespace, which the three sets share.
        for set in &sets {
            sys.uninstall_scale_set(set).await?;
        }
        for (set, jobs) in sets.iter().zip(&jobs) {
            sys.leak_check(set, jobs).await?;
        }
        Ok(())
    }
    .await;
    finish(sys, outcome).await;
}

/// The pod's `status.podIP`.
fn pod_ip(pod: &Pod) -> anyhow::Result<std::net::Ipv4Addr> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .ok_or_else(|| anyhow::anyhow!("pod {:?} has no podIP", pod.metadata.name))?;
    Ok(ip.parse()?)
}
