//! Proof that with the controller-manager and the scheduler on, a Deployment yields pods that
//! the real scheduler binds to a registered (simulated) Node.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use testbed::ControlPlane;

const TIMEOUT: Duration = Duration::from_secs(120);
const FAKE_NODE_TAINT: &str = "testbed.arc-rs.dev/simulated-node";

async fn register_ready_node(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
        // Real clusters given by ARC_TEST_KUBECONFIG must not schedule their own pods here.
        "spec": { "taints": [{ "key": FAKE_NODE_TAINT, "value": "true", "effect": "NoSchedule" }] },
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    let now = now()?;
    let status = json!({
        "status": {
            "capacity": { "cpu": "8", "memory": "32Gi", "pods": "110" },
            "allocatable": { "cpu": "8", "memory": "32Gi", "pods": "110" },
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "simulated by the testbed suite",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }],
        },
    });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    // The API server taints new Nodes not-ready; with no node lifecycle controller, whoever plays
    // the kubelet removes the taint once the Node reports Ready.
    let taints = json!({
        "spec": { "taints": [{ "key": FAKE_NODE_TAINT, "value": "true", "effect": "NoSchedule" }] },
    });
    nodes
        .patch(name, &PatchParams::default(), &Patch::Merge(&taints))
        .await?;
    Ok(())
}

/// The current time as the API server writes it.
fn now() -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::to_value(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    )?)
}

#[tokio::test]
async fn deployment_pods_are_bound_to_a_registered_node() -> anyhow::Result<()> {
    let begin = Instant::now();
    let cp = ControlPlane::shared_with_scheduling().await?;
    println!(
        "control plane with controller-manager and scheduler ready after {:?} (apiserver start-up {:?})",
        begin.elapsed(),
        cp.startup_time()
    );
    let ns = cp.test_namespace("cp-sched").await?;
    let client = cp.client();
    let node_name = format!("sim-{}", ns.name());
    let _node = cp.delete_on_drop::<Node>(&node_name);
    register_ready_node(&client, &node_name).await?;

    let deployment: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": {
                    "nodeSelector": { "kubernetes.io/hostname": node_name },
                    "tolerations": [{ "key": FAKE_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule" }],
                    "containers": [{ "name": "web", "image": "example.invalid/web:1" }],
                },
            },
        },
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    let created = Instant::now();
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let deadline = Instant::now() + TIMEOUT;
    let bound = loop {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        let bound: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name.as_str())
            })
            .collect();
        if bound.len() == 2 {
            break bound;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 2 pods were bound to {node_name}",
            bound.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "Deployment created → 2 pods bound in {:?}",
        created.elapsed()
    );
    for pod in &bound {
        let owner = pod
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.first())
            .map(|o| o.kind.clone());
        assert_eq!(
            owner.as_deref(),
            Some("ReplicaSet"),
            "pods come from the ReplicaSet"
        );
        let scheduled = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "PodScheduled" && c.status == "True")
            });
        assert!(
            scheduled,
            "the scheduler marks the pod scheduled: {:?}",
            pod.status
        );
    }

    deployments
        .delete("web", &DeleteParams::background())
        .await?;
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), ns.name());
    let deadline = Instant::now() + TIMEOUT;
    while !replica_sets
        .list(&ListParams::default())
        .await?
        .items
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the garbage collector never removed the ReplicaSet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
