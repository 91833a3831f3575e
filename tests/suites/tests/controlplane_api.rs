//! Proof that the local control plane is a real Kubernetes API: a CRD applied by server-side
//! apply, objects applied and updated by server-side apply, a status subresource, field-manager
//! conflicts and watch events.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use kube::runtime::{conditions, wait::await_condition, watcher};
use serde_json::json;
use testbed::{ControlPlane, Recorded, WatchRecorder};

const TIMEOUT: Duration = Duration::from_secs(60);
const GROUP: &str = "testbed.arc-rs.dev";

#[tokio::test]
async fn crd_server_side_apply_status_subresource_and_watch() -> anyhow::Result<()> {
    let begin = Instant::now();
    let cp = ControlPlane::shared().await?;
    println!(
        "control plane: cold start-up {:?}; this test waited {:?}",
        cp.startup_time(),
        begin.elapsed()
    );
    let warm = Instant::now();
    ControlPlane::shared().await?;
    println!("control plane: warm (shared) start {:?}", warm.elapsed());

    let ns = cp.test_namespace("cp-api").await?;
    let client = cp.client();

    let suffix = &ns.name()[ns.name().len() - 8..];
    let plural = format!("widgets{suffix}");
    let kind = format!("Widget{suffix}");
    let crd_name = format!("{plural}.{GROUP}");
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": crd_name },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": { "plural": plural, "singular": plural, "kind": kind, "listKind": format!("{kind}List") },
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": { "type": "object", "properties": {
                            "size": { "type": "integer", "minimum": 1 },
                            "color": { "type": "string" },
                        }},
                        "status": { "type": "object", "properties": {
                            "phase": { "type": "string" },
                            "observedSize": { "type": "integer" },
                        }},
                    },
                }},
            }],
        },
    });
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let _guard = cp.delete_on_drop::<CustomResourceDefinition>(&crd_name);
    crds.patch(
        &crd_name,
        &PatchParams::apply("testbed-suite"),
        &Patch::Apply(&crd),
    )
    .await?;
    tokio::time::timeout(
        TIMEOUT,
        await_condition(crds.clone(), &crd_name, conditions::is_crd_established()),
    )
    .await??;

    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, "v1alpha1", &kind),
        &plural,
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns.name(), &resource);
    let recorder = WatchRecorder::start(widgets.clone(), watcher::Config::default()).await?;

    let manifest = |size: i64, status_phase: Option<&str>| {
        let mut object = json!({
            "apiVersion": format!("{GROUP}/v1alpha1"),
            "kind": kind,
            "metadata": { "name": "w1" },
            "spec": { "size": size, "color": "blue" },
        });
        if let Some(phase) = status_phase {
            object["status"] = json!({ "phase": phase });
        }
        object
    };
    let owner = PatchParams::apply("widget-owner");
    let created = widgets
        .patch("w1", &owner, &Patch::Apply(manifest(1, Some("Smuggled"))))
        .await?;
    assert_eq!(created.data["spec"]["size"], 1);
    assert!(
        created.data.get("status").is_none(),
        "the status subresource must ignore status in a main-resource apply: {:?}",
        created.data
    );

    let updated = widgets
        .patch("w1", &owner, &Patch::Apply(manifest(3, None)))
        .await?;
    assert_eq!(updated.data["spec"]["size"], 3);
    assert!(updated.metadata.generation > created.metadata.generation);

    let intruder = widgets
        .patch(
            "w1",
            &PatchParams::apply("widget-intruder"),
            &Patch::Apply(manifest(5, None)),
        )
        .await;
    match intruder {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("a second field manager took over spec.size without force: {other:?}"),
    }

    let status = json!({
        "apiVersion": format!("{GROUP}/v1alpha1"),
        "kind": kind,
        "status": { "phase": "Ready", "observedSize": 3 },
    });
    let with_status = widgets
        .patch_status("w1", &owner, &Patch::Apply(&status))
        .await?;
    assert_eq!(with_status.data["status"]["phase"], "Ready");
    assert_eq!(with_status.data["spec"]["size"], 3);
    assert_eq!(
        with_status.metadata.generation, updated.metadata.generation,
        "a status write must not bump the generation"
    );

    let invalid = widgets
        .patch(
            "w2",
            &owner,
            &Patch::Apply(json!({
                "apiVersion": format!("{GROUP}/v1alpha1"),
                "kind": kind,
                "metadata": { "name": "w2" },
                "spec": { "size": 0 },
            })),
        )
        .await;
    match invalid {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{status:?}"),
        other => panic!("the schema's minimum was not enforced: {other:?}"),
    }

    widgets.delete("w1", &DeleteParams::default()).await?;
    let events = recorder
        .wait_for(TIMEOUT, |events| {
            events.iter().any(|e| matches!(e, Recorded::Deleted(_)))
        })
        .await?;
    let applied_status: Vec<Option<String>> = events
        .iter()
        .filter(|e| matches!(e, Recorded::Applied(_)))
        .map(|e| {
            e.object().data["status"]["phase"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        applied_status.contains(&Some("Ready".to_owned())),
        "the watch never showed the status write: {applied_status:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.object().metadata.name.as_deref() == Some("w1")),
        "only w1 was ever created"
    );
    Ok(())
}
