//! The leak check: after a scale set is uninstalled, every job completed exactly once with its
//! own result, and nothing of the scale set is left in the service or the cluster.

use actions_emulator::{JobPhase, StateSnapshot};
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_reconcilers::crd::{
    AutoscalingListener, AutoscalingRunnerSet, EphemeralRunner, EphemeralRunnerSet,
};
use kube::Resource;
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;

use crate::system::{ScaleSet, System};

/// What the leak check found wrong (empty when clean).
#[derive(Debug, Default, Clone)]
pub struct LeakReport {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl LeakReport {
    /// Whether nothing leaked.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for LeakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.problems.is_empty() {
            return write!(f, "no leaks");
        }
        write!(
            f,
            "{} leaks:\n  {}",
            self.problems.len(),
            self.problems.join("\n  ")
        )
    }
}

/// The jobs that did not complete exactly once with their queued result.
pub(crate) fn job_problems(snap: &StateSnapshot, jobs: &[i64]) -> Vec<String> {
    let mut out = Vec::new();
    for id in jobs {
        let Some(job) = snap.job(*id) else {
            out.push(format!("job {id}: unknown to the emulator"));
            continue;
        };
        if job.phase != JobPhase::Completed {
            out.push(format!("job {id}: not completed ({:?})", job.phase));
        } else if job.result != Some(job.spec.result) {
            out.push(format!(
                "job {id}: completed with {:?}, queued to end {:?} (it was interrupted or run twice)",
                job.result, job.spec.result
            ));
        } else if job.started_at.is_none() || job.runner_id.is_none() {
            out.push(format!(
                "job {id}: completed without a runner having run it"
            ));
        }
    }
    let mut by_runner = std::collections::HashMap::new();
    for job in snap.jobs.iter().filter(|j| jobs.contains(&j.id)) {
        if let Some(r) = job.runner_id {
            *by_runner.entry(r).or_insert(0) += 1;
        }
    }
    for (runner, n) in by_runner {
        if n > 1 {
            out.push(format!(
                "runner {runner} ran {n} jobs (ephemeral runners run one)"
            ));
        }
    }
    out
}

async fn names<K>(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<(String, K)>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|o| (o.meta().name.clone().unwrap_or_default(), o))
        .collect())
}

impl System {
    /// Checks, after [`System::uninstall_scale_set`], that every job of `jobs` completed
    /// exactly once with its own result, and that the service has no scale set, session or
    /// registration of `set` left, and the cluster no AutoscalingRunnerSet, EphemeralRunnerSet,
    /// EphemeralRunner, AutoscalingListener, runner or listener pod, Secret (other than
    /// ServiceAccount tokens), listener ServiceAccount, Role or RoleBinding. Waits up to 60 s
    /// for the cluster side to settle (garbage collection is asynchronous).
    pub async fn leak_check(&self, set: &ScaleSet, jobs: &[i64]) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let report = self.leaks(set, jobs).await?;
            if report.is_clean() {
                self.stage("leak check clean");
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("{report}{}", self.diagnostics().await);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }

    /// One pass of [`System::leak_check`].
    pub async fn leaks(&self, set: &ScaleSet, jobs: &[i64]) -> anyhow::Result<LeakReport> {
        let snap = self.emulator().snapshot();
        let mut problems = job_problems(&snap, jobs);
        if snap.scale_set(set.id).is_some() {
            problems.push(format!(
                "service: scale set {} ({}) still exists",
                set.scale_set_name, set.id
            ));
        }
        if snap.active_session(set.id).is_some() {
            problems.push(format!("service: scale set {} still has a session", set.id));
        }
        for r in snap.runners.iter().filter(|r| r.scale_set_id == set.id) {
            problems.push(format!(
                "service: orphaned registration {} ({})",
                r.name, r.id
            ));
        }
        let client = self.client();
        let ns = set.namespace.as_str();
        let ctl = self.controller_namespace();
        for (name, _) in names::<AutoscalingRunnerSet>(&client, ns).await? {
            problems.push(format!("cluster: AutoscalingRunnerSet {ns}/{name}"));
        }
        for (name, _) in names::<EphemeralRunnerSet>(&client, ns).await? {
            problems.push(format!("cluster: EphemeralRunnerSet {ns}/{name}"));
        }
        for (name, _) in names::<EphemeralRunner>(&client, ns).await? {
            problems.push(format!("cluster: EphemeralRunner {ns}/{name}"));
        }
        for (name, _) in names::<AutoscalingListener>(&client, ctl).await? {
            problems.push(format!("cluster: AutoscalingListener {ctl}/{name}"));
        }
        for (name, _) in names::<Pod>(&client, ns).await? {
            problems.push(format!("cluster: pod {ns}/{name}"));
        }
        for (name, pod) in names::<Pod>(&client, ctl).await? {
            let manager = pod
                .spec
                .as_ref()
                .is_some_and(|s| s.containers.iter().any(|c| c.name == "manager"));
            if !manager {
                problems.push(format!("cluster: pod {ctl}/{name}"));
            }
        }
        for namespace in [ns, ctl] {
            for (name, secret) in names::<Secret>(&client, namespace).await? {
                if secret.type_.as_deref() != Some("kubernetes.io/service-account-token") {
                    problems.push(format!("cluster: Secret {namespace}/{name}"));
                }
            }
        }
        let kept_sa = ["default", self.controller_service_account()];
        for (name, _) in names::<ServiceAccount>(&client, ctl).await? {
            if !kept_sa.contains(&name.as_str()) {
                problems.push(format!("cluster: ServiceAccount {ctl}/{name}"));
            }
        }
        for (name, _) in names::<ServiceAccount>(&client, ns).await? {
            if name != "default" {
                problems.push(format!("cluster: ServiceAccount {ns}/{name}"));
            }
        }
        let chart = self.controller_object_names();
        for namespace in [ns, ctl] {
            for (name, _) in names::<Role>(&client, namespace).await? {
                if !chart.contains(&("Role", namespace.to_owned(), name.clone())) {
                    problems.push(format!("cluster: Role {namespace}/{name}"));
                }
            }
            for (name, _) in names::<RoleBinding>(&client, namespace).await? {
                if !chart.contains(&("RoleBinding", namespace.to_owned(), name.clone())) {
                    problems.push(format!("cluster: RoleBinding {namespace}/{name}"));
                }
            }
        }
        Ok(LeakReport { problems })
    }
}
