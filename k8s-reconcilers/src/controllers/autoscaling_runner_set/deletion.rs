//! Deletion of an AutoscalingRunnerSet in ADR 2022-10-27 order: listener, runners, scale set,
//! chart objects' cleanup-protection finalizers, then the ARS finalizer
//! (docs/architecture.md#ars-deletion-order).

use crate::controllers::ignore_not_found;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use scaleset_core::autoscaling_runner_set::{
    CleanupTarget, DeletionObservation, DeletionStep, Presence, deletion_step,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::Context;
use crate::crd::{AutoscalingListener, AutoscalingRunnerSet, EphemeralRunnerSet};
use crate::error::Error;
use crate::names::{annotations, finalizers, labels};

/// Most steps one pass performs before it waits for the cluster.
const MAX_STEPS: usize = 16;

/// Runs deletion steps until one has to wait (`Err(Error::Waiting)`) or all are done (`Ok`).
pub async fn cleanup(ars: &AutoscalingRunnerSet, ctx: &Context) -> Result<(), Error> {
    let ns = super::namespace(ars)?;
    let mut scale_set_id = scaleset_core::autoscaling_runner_set::parse_scale_set_id(
        ars.annotations()
            .get(annotations::RUNNER_SCALE_SET_ID)
            .map(String::as_str),
    );
    let mut released: Vec<CleanupTarget> = Vec::new();
    for _ in 0..MAX_STEPS {
        let listeners = listeners_of(ars, ctx).await?;
        let runner_set = Api::<EphemeralRunnerSet>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&ars.name_any())
            .await?;
        let protected = protected_targets(ars, ctx, &ns, &released).await?;
        let observation = DeletionObservation {
            listener: presence(
                listeners
                    .iter()
                    .map(|l| l.meta().deletion_timestamp.is_some()),
            ),
            runner_set: presence(
                runner_set
                    .iter()
                    .map(|r| r.meta().deletion_timestamp.is_some()),
            ),
            runner_set_at_zero: runner_set
                .as_ref()
                .is_some_and(|r| r.spec.replicas == 0 && r.spec.patch_id == 0),
            scale_set_id,
            protected,
        };
        let step = deletion_step(&observation);
        tracing::debug!(ars = %ars.name_any(), ?step, "deletion step");
        match step {
            DeletionStep::StopListener => {
                for l in listeners
                    .iter()
                    .filter(|l| l.meta().deletion_timestamp.is_none())
                {
                    let api: Api<AutoscalingListener> =
                        Api::namespaced(ctx.client.clone(), &l.namespace().unwrap_or_default());
                    ignore_not_found(api.delete(&l.name_any(), &DeleteParams::default()).await)?;
                }
            }
            DeletionStep::WaitForListener(d) => {
                return Err(Error::Waiting {
                    what: "the AutoscalingListener to be deleted".into(),
                    retry_after: d,
                });
            }
            DeletionStep::ScaleToZero => {
                let api: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
                let patch = json!({"spec": {"replicas": null, "patchID": 0}});
                ignore_not_found(
                    api.patch(
                        &ars.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await,
                )?;
            }
            DeletionStep::StopRunners => {
                let api: Api<EphemeralRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
                ignore_not_found(api.delete(&ars.name_any(), &DeleteParams::default()).await)?;
            }
            DeletionStep::WaitForRunners(d) => {
                return Err(Error::Waiting {
                    what: "the EphemeralRunnerSet and its runners to be deleted".into(),
                    retry_after: d,
                });
            }
            DeletionStep::DeleteScaleSet(id) => {
                let service = super::actions_service(ars, ctx).await?;
                match service.delete_runner_scale_set(id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(Error::Service(e)),
                }
                tracing::info!(ars = %ars.name_any(), id, "runner scale set deleted on the service");
                let api: Api<AutoscalingRunnerSet> = Api::namespaced(ctx.client.clone(), &ns);
                let patch =
                    json!({"metadata": {"annotations": {annotations::RUNNER_SCALE_SET_ID: null}}});
                ignore_not_found(
                    api.patch(
                        &ars.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await,
                )?;
                scale_set_id = None;
            }
            DeletionStep::RemoveCleanupFinalizer(target) => {
                release(ars, ctx, &ns, target).await?;
                released.push(target);
            }
            DeletionStep::RemoveFinalizer => return Ok(()),
        }
    }
    Err(Error::Waiting {
        what: "further deletion steps".into(),
        retry_after: std::time::Duration::from_secs(1),
    })
}

/// Presence of a set of objects from whether each is terminating.
pub(super) fn presence(deleting: impl Iterator<Item = bool>) -> Presence {
    let all: Vec<bool> = deleting.collect();
    if all.iter().any(|d| !d) {
        Presence::Present
    } else if all.is_empty() {
        Presence::Absent
    } else {
        Presence::Terminating
    }
}

/// Listeners of this ARS: by the scale-set labels in the controller namespace (this also finds
/// listeners left behind by a runner-group or URL change, quirk Q4 of
/// docs/architecture.md#arc-reconciler-quirks). An ARS whose name is no label value has none
/// (nothing can carry that label), and the list is not asked for, so deleting it never fails on
/// an invalid selector.
pub async fn listeners_of(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
) -> Result<Vec<AutoscalingListener>, Error> {
    if !scaleset_core::naming::is_valid_label_value(&ars.name_any()) {
        return Ok(Vec::new());
    }
    let api: Api<AutoscalingListener> =
        Api::namespaced(ctx.client.clone(), &ctx.options.controller_namespace);
    let selector = format!(
        "{}={},{}={}",
        labels::SCALE_SET_NAME,
        ars.name_any(),
        labels::SCALE_SET_NAMESPACE,
        ars.namespace().unwrap_or_default()
    );
    Ok(api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|l| is_listener_of(l, ars))
        .collect())
}

/// Whether `al` carries the scale-set labels of `ars` and names it in its spec.
pub(crate) fn is_listener_of(al: &AutoscalingListener, ars: &AutoscalingRunnerSet) -> bool {
    let name = ars.name_any();
    let namespace = ars.namespace();
    al.labels().get(labels::SCALE_SET_NAME) == Some(&name)
        && al.labels().get(labels::SCALE_SET_NAMESPACE) == namespace.as_ref()
        && al.spec.autoscaling_runner_set_name.as_deref() == Some(name.as_str())
        && al.spec.autoscaling_runner_set_namespace == namespace
}

fn target_annotation(target: CleanupTarget) -> &'static str {
    match target {
        CleanupTarget::KubernetesModeRoleBinding => {
            annotations::CLEANUP_KUBERNETES_MODE_ROLE_BINDING_NAME
        }
        CleanupTarget::KubernetesModeRole => annotations::CLEANUP_KUBERNETES_MODE_ROLE_NAME,
        CleanupTarget::KubernetesModeServiceAccount => {
            annotations::CLEANUP_KUBERNETES_MODE_SERVICE_ACCOUNT_NAME
        }
        CleanupTarget::NoPermissionServiceAccount => {
            annotations::CLEANUP_NO_PERMISSION_SERVICE_ACCOUNT_NAME
        }
        CleanupTarget::GithubSecret => annotations::CLEANUP_GITHUB_SECRET_NAME,
        CleanupTarget::ManagerRoleBinding => annotations::CLEANUP_MANAGER_ROLE_BINDING,
        CleanupTarget::ManagerRole => annotations::CLEANUP_MANAGER_ROLE_NAME,
    }
}

/// Targets still carrying the cleanup-protection finalizer. Targets released in this pass are
/// not looked at again: once the manager RoleBinding is gone the controller may no longer read
/// the others.
async fn protected_targets(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
    ns: &str,
    released: &[CleanupTarget],
) -> Result<Vec<CleanupTarget>, Error> {
    let mut out = Vec::new();
    for target in CleanupTarget::ORDER {
        if released.contains(&target) {
            continue;
        }
        let Some(name) = ars.annotations().get(target_annotation(target)) else {
            continue;
        };
        let finalizers = match target {
            CleanupTarget::KubernetesModeRoleBinding | CleanupTarget::ManagerRoleBinding => {
                finalizers_of::<RoleBinding>(ctx, ns, name).await
            }
            CleanupTarget::KubernetesModeRole | CleanupTarget::ManagerRole => {
                finalizers_of::<Role>(ctx, ns, name).await
            }
            CleanupTarget::KubernetesModeServiceAccount
            | CleanupTarget::NoPermissionServiceAccount => {
                finalizers_of::<ServiceAccount>(ctx, ns, name).await
            }
            CleanupTarget::GithubSecret => match finalizers_of::<Secret>(ctx, ns, name).await {
                Err(Error::Kube(kube::Error::Api(s))) if s.code == 403 => Ok(Vec::new()),
                other => other,
            },
        }?;
        if finalizers
            .iter()
            .any(|f| f == finalizers::CLEANUP_PROTECTION)
        {
            out.push(target);
        }
    }
    Ok(out)
}

async fn finalizers_of<K>(ctx: &Context, ns: &str, name: &str) -> Result<Vec<String>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Ok(find::<K>(ctx, ns, name)
        .await?
        .map(|o| o.finalizers().to_vec())
        .unwrap_or_default())
}

/// Reads one object by listing with a name field selector: the controller chart's ClusterRole
/// grants `list` (not `get`) on ServiceAccounts, Roles and RoleBindings, which is all that is
/// left once the scale-set chart's manager RoleBinding is gone. Secrets are read with `get`
/// (the manager Role grants it; there is no cluster-wide Secret access).
async fn find<K>(ctx: &Context, ns: &str, name: &str) -> Result<Option<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    if K::kind(&()) == "Secret" {
        return Ok(api.get_opt(name).await?);
    }
    let selector = format!("metadata.name={name}");
    Ok(api
        .list(&ListParams::default().fields(&selector))
        .await?
        .items
        .into_iter()
        .next())
}

async fn release(
    ars: &AutoscalingRunnerSet,
    ctx: &Context,
    ns: &str,
    target: CleanupTarget,
) -> Result<(), Error> {
    let Some(name) = ars.annotations().get(target_annotation(target)) else {
        return Ok(());
    };
    match target {
        CleanupTarget::KubernetesModeRoleBinding | CleanupTarget::ManagerRoleBinding => {
            unprotect::<RoleBinding>(ctx, ns, name).await
        }
        CleanupTarget::KubernetesModeRole | CleanupTarget::ManagerRole => {
            unprotect::<Role>(ctx, ns, name).await
        }
        CleanupTarget::KubernetesModeServiceAccount | CleanupTarget::NoPermissionServiceAccount => {
            unprotect::<ServiceAccount>(ctx, ns, name).await
        }
        CleanupTarget::GithubSecret => match unprotect::<Secret>(ctx, ns, name).await {
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 403 => Ok(()),
            other => other,
        },
    }
}

async fn unprotect<K>(ctx: &Context, ns: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let Some(obj) = find::<K>(ctx, ns, name).await? else {
        return Ok(());
    };
    let remaining: Vec<&String> = obj
        .finalizers()
        .iter()
        .filter(|f| f.as_str() != finalizers::CLEANUP_PROTECTION)
        .collect();
    let patch =
        json!({"metadata": {"finalizers": remaining, "resourceVersion": obj.resource_version()}});
    ignore_not_found(
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await,
    )
}
