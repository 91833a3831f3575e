//! End-to-end fault cases of the reliability goals: the manager killed and restarted mid-burst,
//! the listener killed, the API server restarted, bursts of Actions-service faults, pods
//! evicted. Each ends with the leak check: every job completed exactly once with its own result,
//! no registration, pod, Secret or EphemeralRunner left.

use std::time::Duration;

use actions_emulator::{Fault, FaultKind};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_reconcilers::controllers::autoscaling_listener::RESTART_HISTORY_ANNOTATION;
use secrecy::ExposeSecret;
use system::{ScaleSet, ScaleSetSpec, System, SystemOptions, WAIT, wait_for};
use testbed::{ControlPlane, ControlPlaneOptions};

async fn start(name: &str) -> System {
    System::shared(SystemOptions::new(name))
        .await
        .expect("system")
}

/// A system whose service expires a session 15 s after its last poll: a killed listener cannot
/// delete its session, so its successor gets 409 until the service drops the dead one.
async fn start_with_session_expiry(name: &str) -> System {
    let mut options = SystemOptions::new(name);
    options.emulator.session_expiry = Duration::from_secs(15);
    System::shared(options).await.expect("system")
}

fn session_id(sys: &System, set: &ScaleSet) -> Option<String> {
    sys.emulator()
        .snapshot()
        .active_session(set.id)
        .map(|s| s.id.clone())
}

async fn finish(sys: System, outcome: anyhow::Result<()>) {
    if let Err(e) = sys.finish(outcome).await {
        panic!("{e:#}");
    }
}

/// The status of `container` of `pod`, once the pod reports one.
fn container_status<'a>(pod: &'a Pod, container: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == container)
}

fn restarts(pod: &Pod, container: &str) -> i32 {
    container_status(pod, container).map_or(0, |c| c.restart_count)
}

async fn wait_some_runner_pod(sys: &System, set: &ScaleSet) -> anyhow::Result<()> {
    wait_for(WAIT, "a runner pod", || async {
        Ok(!sys.runner_pods(set).await?.is_empty())
    })
    .await
}

/// Finishes a scenario: waits for the jobs, the scale-down, uninstalls and checks for leaks.
async fn settle(sys: &System, set: &ScaleSet, jobs: &[i64], idle: usize) -> anyhow::Result<()> {
    sys.wait_jobs_completed(jobs, WAIT).await?;
    sys.wait_runners(set, idle, WAIT).await?;
    sys.uninstall_scale_set(set).await?;
    sys.leak_check(set, jobs).await
}

#[tokio::test]
async fn manager_killed_and_restarted_mid_burst() {
    let sys = start("e2e-mgrkill").await;
    let outcome = async {
        let set = sys
            .install_scale_set(ScaleSetSpec::new("arc-mgrkill"))
            .await?;
        let jobs = sys.queue_jobs(&set, 6, Duration::from_secs(3));
        wait_some_runner_pod(&sys, &set).await?;
        let pod = sys
            .manager_pods()
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no manager pod"))?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let before = restarts(&pod, "manager");
        sys.sim()
            .kill_container(sys.controller_namespace(), &name, "manager")
            .await?;
        wait_for(WAIT, "the manager container to restart", || async {
            let pods = sys.manager_pods().await?;
            Ok(pods.iter().any(|p| restarts(p, "manager") > before))
        })
        .await?;
        sys.wait_manager_running(WAIT).await?;
        settle(&sys, &set, &jobs, 0).await
    }
    .await;
    finish(sys, outcome).await;
}

#[tokio::test]
async fn listener_killed() {
    let sys = start_with_session_expiry("e2e-lstkill").await;
    let outcome = async {
        let set = sys
            .install_scale_set(ScaleSetSpec::new("arc-lstkill"))
            .await?;
        let mut jobs = sys.queue_jobs(&set, 3, Duration::from_secs(3));
        wait_some_runner_pod(&sys, &set).await?;
        let pod = sys
            .listener_pod(&set)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no listener pod"))?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone();
        sys.sim()
            .kill_container(sys.controller_namespace(), &name, "listener")
            .await?;
        wait_for(WAIT, "a new listener to hold a session", || async {
            let pod = sys.listener_pod(&set).await?;
            let replaced = pod
                .as_ref()
                .is_some_and(|p| p.metadata.uid != uid || restarts(p, "listener") > 0);
            let snap = sys.emulator().snapshot();
            Ok(replaced && snap.active_session(set.id).is_some())
        })
        .await?;
        jobs.extend(sys.queue_jobs(&set, 2, Duration::from_secs(1)));
        settle(&sys, &set, &jobs, 0).await
    }
    .await;
    finish(sys, outcome).await;
}

#[tokio::test]
async fn apiserver_restarted() {
    let cp = ControlPlane::start(ControlPlaneOptions {
        scheduling: true,
        ..ControlPlaneOptions::default()
    })
    .await
    .expect("own control plane");
    let sys = System::start(cp.into(), SystemOptions::new("e2e-apirst"))
        .await
        .expect("system");
    let outcome = async {
        let set = sys
            .install_scale_set(ScaleSetSpec::new("arc-apirst"))
            .await?;
        let mut jobs = sys.queue_jobs(&set, 3, Duration::from_secs(3));
        wait_some_runner_pod(&sys, &set).await?;
        sys.plane().restart_apiserver().await?;
        jobs.extend(sys.queue_jobs(&set, 2, Duration::from_secs(1)));
        settle(&sys, &set, &jobs, 0).await
    }
    .await;
    finish(sys, outcome).await;
}

#[tokio::test]
async fn emulator_fault_bursts() {
    let sys = start("e2e-faults").await;
    let outcome = async {
        let set = sys
            .install_scale_set(ScaleSetSpec::new("arc-faults"))
            .await?;
        let emu = sys.emulator();
        emu.inject(Fault::everywhere(FaultKind::status(503)).with_rate(0.3));
        emu.inject(Fault::everywhere(FaultKind::retry_after(429, 1)).with_rate(0.1));
        let jobs = sys.queue_jobs(&set, 4, Duration::from_secs(2));
        wait_for(WAIT, "jobs to start despite the faults", || async {
            let snap = emu.snapshot();
            Ok(jobs
                .iter()
                .filter_map(|id| snap.job(*id))
                .any(|j| j.started_at.is_some()))
        })
        .await?;
        emu.clear_faults();
        settle(&sys, &set, &jobs, 0).await
    }
    .await;
    finish(sys, outcome).await;
}

#[tokio::test]
async fn pods_evicted() {
    let sys = start_with_session_expiry("e2e-evict").await;
    let outcome = async {
        let set = sys
            .install_scale_set(
                ScaleSetSpec::new("arc-evict").values(serde_json::json!({ "minRunners": 2 })),
            )
            .await?;
        sys.wait_runners(&set, 2, WAIT).await?;
        let idle = sys.runner_pods(&set).await?;
        for pod in &idle {
            let name = pod.metadata.name.clone().unwrap_or_default();
            sys.sim().evict_pod(&set.namespace, &name).await?;
        }
        let listener = sys
            .listener_pod(&set)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no listener pod"))?;
        let listener_uid = listener.metadata.uid.clone();
        let old_session = session_id(&sys, &set);
        sys.sim()
            .evict_pod(
                sys.controller_namespace(),
                &listener.metadata.name.clone().unwrap_or_default(),
            )
            .await?;
        let evicted: Vec<_> = idle.iter().map(|p| p.metadata.uid.clone()).collect();
        wait_for(WAIT, "replacement runners and listener", || async {
            let pods = sys.runner_pods(&set).await?;
            let fresh = pods
                .iter()
                .filter(|p| !evicted.contains(&p.metadata.uid))
                .count();
            let listener = sys.listener_pod(&set).await?;
            let new_listener = listener.is_some_and(|l| l.metadata.uid != listener_uid);
            Ok(fresh == 2 && pods.len() == 2 && new_listener)
        })
        .await?;
        wait_for(WAIT, "a new listener session", || async {
            let new = session_id(&sys, &set);
            Ok(new.is_some() && new != old_session)
        })
        .await?;
        let jobs = sys.queue_jobs(&set, 3, Duration::from_secs(1));
        settle(&sys, &set, &jobs, 2).await
    }
    .await;
    finish(sys, outcome).await;
}

/// The listener runs in a container from the manager image (its pod status names the podman
/// container); when the service rejects its credentials it exits writing `auth` to its
/// termination log, the status carries that message as a kubelet reads it, and the controller
/// records the exit class and holds the restart back instead of restarting at once.
#[tokio::test]
async fn rejected_credentials_reach_the_controller_through_the_termination_message() {
    let sys = start("e2e-lstauth").await;
    let outcome = async {
        let set = sys
            .install_scale_set(ScaleSetSpec::new("arc-lstauth"))
            .await?;
        let pod = sys
            .listener_pod(&set)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no listener pod"))?;
        let uid = pod.metadata.uid.clone();
        if sys.options().runtime == system::ContainerRuntime::Podman {
            let id = container_status(&pod, "listener")
                .and_then(|c| c.container_id.clone())
                .unwrap_or_default();
            let name = id
                .strip_prefix("podman://")
                .ok_or_else(|| anyhow::anyhow!("listener container id {id:?} is not podman's"))?;
            let inspect = system::images::podman()
                .args(["inspect", "--format", "{{.ImageName}}", name])
                .output()?;
            let text = String::from_utf8_lossy(&inspect.stdout);
            anyhow::ensure!(
                inspect.status.success() && text.contains("gha-runner-scale-set-controller"),
                "podman does not run the listener from the manager image: {text}"
            );
        }
        // The controller replaces the pod as soon as it has read the exit, so watch for it.
        let pods: kube::Api<Pod> = kube::Api::namespaced(sys.client(), sys.controller_namespace());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let config =
            kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut updates = Box::pin(kube::runtime::WatchStreamExt::applied_objects(
            kube::runtime::watcher(pods, config),
        ));
        let exit = tokio::spawn(async move {
            while let Some(pod) = futures::TryStreamExt::try_next(&mut updates).await? {
                let terminated = Some(&pod)
                    .filter(|p| p.metadata.uid == uid)
                    .and_then(|p| container_status(p, "listener")?.state.clone()?.terminated);
                if let Some(t) = terminated {
                    return anyhow::Ok(t.message.unwrap_or_default());
                }
            }
            anyhow::bail!("the pod watch ended")
        });
        // The watch lists the pod first, so it is under way before the faults go in.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for endpoint in [
            actions_emulator::Endpoint::GetMessage,
            actions_emulator::Endpoint::RefreshSession,
            actions_emulator::Endpoint::CreateSession,
        ] {
            sys.emulator()
                .inject(Fault::always(endpoint, FaultKind::status(401)));
        }
        let message = tokio::time::timeout(WAIT, exit).await.map_err(|_| {
            anyhow::anyhow!("the listener did not exit on rejected credentials")
        })???;
        anyhow::ensure!(
            message.starts_with("arc-listener-exit=auth: "),
            "termination message: {message:?}"
        );
        let pat = sys.emulator().pat();
        anyhow::ensure!(
            !message.contains(pat.expose_secret()),
            "a secret in {message:?}"
        );
        let listeners: kube::Api<k8s_reconcilers::crd::AutoscalingListener> =
            kube::Api::namespaced(sys.client(), sys.controller_namespace());
        wait_for(WAIT, "the controller to record the auth exit", || async {
            let recorded = listeners
                .list(&Default::default())
                .await?
                .items
                .iter()
                .filter_map(|l| l.metadata.annotations.as_ref())
                .filter_map(|a| a.get(RESTART_HISTORY_ANNOTATION))
                .any(|h| h.contains("Auth"));
            Ok(recorded)
        })
        .await?;
        // A deterministic exit is restarted after a minute, not at once.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let replaced = sys
            .listener_pod(&set)
            .await?
            .as_ref()
            .and_then(|p| container_status(p, "listener")?.state.as_ref())
            .is_some_and(|s| s.running.is_some());
        anyhow::ensure!(
            !replaced,
            "the listener was restarted at once after an auth exit"
        );
        sys.emulator().clear_faults();
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &[]).await
    }
    .await;
    finish(sys, outcome).await;
}

/// A scale set whose Secret goes missing gets a Warning Event the user reads with `kubectl get
/// events`, published by the manager under the charts' RBAC, and runs jobs again once the
/// Secret name is fixed.
#[tokio::test]
async fn a_missing_secret_is_a_warning_event_under_the_chart_rbac() {
    use k8s_openapi::api::events::v1::Event;
    use k8s_reconcilers::crd::AutoscalingRunnerSet;
    use kube::api::{Patch, PatchParams};
    let sys = start("e2e-warn").await;
    let outcome = async {
        let set = sys.install_scale_set(ScaleSetSpec::new("arc-warn")).await?;
        let ars: kube::Api<AutoscalingRunnerSet> =
            kube::Api::namespaced(sys.client(), &set.namespace);
        let secret = ars.get(&set.name).await?.spec.github_config_secret;
        let set_secret = |name: Option<String>| {
            let patch = serde_json::json!({"spec": {"githubConfigSecret": name}});
            let ars = ars.clone();
            let ars_name = set.name.clone();
            async move {
                ars.patch(&ars_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        };
        set_secret(Some("no-such-secret".into())).await?;
        let events: kube::Api<Event> = kube::Api::namespaced(sys.client(), &set.namespace);
        wait_for(
            WAIT,
            "a Warning Event naming the missing Secret",
            || async {
                Ok(events
                    .list(&Default::default())
                    .await?
                    .items
                    .iter()
                    .any(|e| {
                        e.type_.as_deref() == Some("Warning")
                            && e.reason.as_deref() == Some("InvalidConfiguration")
                            && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                                == Some(&set.name)
                            && e.note
                                .as_deref()
                                .is_some_and(|n| n.contains("no-such-secret"))
                    }))
            },
        )
        .await?;
        set_secret(secret).await?;
        let jobs = sys.run_jobs(&set, 1, Duration::from_secs(1), 0).await?;
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    finish(sys, outcome).await;
}
