//! A storage provisioner for the simulated nodes, as a cluster's CSI driver would be: a default
//! StorageClass whose claims get a volume at once, so that pods with persistent or generic
//! ephemeral volumes (the work volume of ARC's kubernetes container mode) are scheduled.
//!
//! Each claim of the class gets a PersistentVolume named after it and bound to it (claimRef), which
//! the controller-manager's PersistentVolume controller completes; a volume released by its claim
//! is deleted, as the class's `Delete` reclaim policy says. The node simulator mounts such volumes
//! as empty directories.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

/// The StorageClass the simulator provisions for.
pub const STORAGE_CLASS: &str = "nodesim-local";
/// Its provisioner name.
const PROVISIONER: &str = "nodesim.arc-rs.dev/local";
const FIELD_MANAGER: &str = "nodesim-provisioner";
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// Applies the StorageClass, the cluster's default unless another class already is.
pub(crate) async fn ensure_storage_class(client: &kube::Client) -> anyhow::Result<()> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let other_default = classes
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|c| {
            c.metadata.name.as_deref() != Some(STORAGE_CLASS)
                && c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
        });
    let class = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": { DEFAULT_CLASS_ANNOTATION: (!other_default).to_string() },
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    });
    classes
        .patch(
            STORAGE_CLASS,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&class),
        )
        .await?;
    Ok(())
}

/// Provisions a volume for every pending claim of the class, until the task is aborted.
pub(crate) async fn provision_claims(client: kube::Client) {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client);
    let stream = watcher(claims, watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    loop {
        match stream.try_next().await {
            Ok(Some(claim)) => {
                if let Err(e) = provision(&volumes, &claim).await {
                    tracing::warn!(error = %e, "provisioning a volume failed");
                }
            }
            Ok(None) => return,
            Err(e) => tracing::debug!(error = %e, "watching PersistentVolumeClaims"),
        }
    }
}

/// Deletes the volumes of the class that their claims released, until the task is aborted.
pub(crate) async fn delete_released(client: kube::Client) {
    let volumes: Api<PersistentVolume> = Api::all(client);
    let stream = watcher(volumes.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|v| async move { v.ok() });
    futures::pin_mut!(stream);
    while let Some(volume) = stream.next().await {
        let ours = volume
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            == Some(STORAGE_CLASS);
        let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        if !(ours && released) {
            continue;
        }
        let name = volume.metadata.name.unwrap_or_default();
        match volumes.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::debug!(volume = %name, "deleted a released volume"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => tracing::warn!(volume = %name, error = %e, "deleting a released volume"),
        }
    }
}

async fn provision(
    volumes: &Api<PersistentVolume>,
    claim: &PersistentVolumeClaim,
) -> anyhow::Result<()> {
    let Some(spec) = claim.spec.as_ref() else {
        return Ok(());
    };
    let pending = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Pending");
    if spec.storage_class_name.as_deref() != Some(STORAGE_CLASS)
        || spec.volume_name.is_some()
        || !pending
        || claim.metadata.deletion_timestamp.is_some()
    {
        return Ok(());
    }
    let (Some(namespace), Some(name), Some(uid)) = (
        claim.metadata.namespace.as_deref(),
        claim.metadata.name.as_deref(),
        claim.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "1Gi".to_owned(), |q| q.0.clone());
    let volume_name = format!("pvc-{uid}");
    let volume: PersistentVolume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name,
            "annotations": { "pv.kubernetes.io/provisioned-by": PROVISIONER },
        },
        "spec": {
            "capacity": { "storage": size },
            "accessModes": spec.access_modes.clone().unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]),
            "volumeMode": spec.volume_mode.clone().unwrap_or_else(|| "Filesystem".to_owned()),
            "storageClassName": STORAGE_CLASS,
            "persistentVolumeReclaimPolicy": "Delete",
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": namespace, "name": name, "uid": uid,
            },
            "hostPath": { "path": format!("/nodesim/volumes/{volume_name}") },
        },
    }))?;
    match volumes.create(&PostParams::default(), &volume).await {
        Ok(_) => {
            tracing::info!(claim = %format!("{namespace}/{name}"), volume = %volume_name, size, "provisioned a volume");
            Ok(())
        }
        // Another simulator on the same cluster provisioned it first.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
