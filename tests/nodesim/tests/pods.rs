//! The simulator as a kubelet against the real control plane with the real scheduler: Node
//! registration, env and volume resolution, pod status, graceful deletion, restarts, and the
//! failure injections. Process containers run `/bin/sh` here (matched by image) so that what
//! the kubelet resolved can be read back from the container's output.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use nodesim::FAIL_INIT_ANNOTATION;
use serde_json::json;
use support::{condition, container, create, init_container, phase, pod, simulator, wait_pod};
use testbed::ControlPlane;

fn shell(config: &mut nodesim::SimulatorConfig) {
    config.listener_binary = Some("/bin/sh".into());
    config.listener_matcher = nodesim::ContainerMatcher {
        names: Vec::new(),
        image_contains: vec!["sh-test".to_owned()],
    };
    config.process_rules = vec![nodesim::ProcessRule {
        matcher: nodesim::ContainerMatcher {
            names: vec!["manager".to_owned()],
            image_contains: Vec::new(),
        },
        binary: Some("/bin/sh".into()),
        env: vec![("FROM_RULE".to_owned(), "rule-env".to_owned())],
    }];
}

#[tokio::test]
async fn nodes_are_ready_with_capacity_and_a_lease() -> anyhow::Result<()> {
    let cp = ControlPlane::shared_with_scheduling().await?;
    let ns = cp.test_namespace("nodesim-node").await?;
    let sim = simulator(cp, ns.name(), |_| {}).await?;
    let name = sim.node_names()[0].clone();
    let node = Api::<Node>::all(cp.client()).get(&name).await?;
    let status = node.status.clone().unwrap();
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(status.capacity.unwrap()["pods"].0, "250");
    let taints = node.spec.unwrap().taints.unwrap_or_default();
    assert_eq!(
        taints.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(),
        vec![nodesim::SIMULATED_NODE_TAINT],
        "only the testbed taint; the API server's not-ready taint is lifted"
    );
    let lease = Api::<Lease>::namespaced(cp.client(), "kube-node-lease")
        .get(&name)
        .await?;
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some(name.as_str())
    );
    sim.shutdown().await;
    assert!(
        Api::<Node>::all(cp.client())
            .get_opt(&name)
            .await?
            .is_none(),
        "the Node is deleted on shutdown"
    );
    Ok(())
}

#[tokio::test]
async fn env_secrets_config_maps_and_secret_volumes_reach_the_process() -> anyhow::Result<()> {
    let cp = ControlPlane::shared_with_scheduling().await?;
    let ns = cp.test_namespace("nodesim-env").await?;
    let client = cp.client();
    let sim = simulator(cp, ns.name(), shell).await?;
    let node = sim.node_names()[0].clone();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "creds" },
        "stringData": { "token": "s3cret-value", "config.json": "{\"k\":\"from-volume\"}" },
    }))?;
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await?;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "settings" }, "data": { "level": "debug", "FROM_ENVFROM": "yes" },
    }))?;
    Api::<ConfigMap>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &cm)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let script = "echo TOKEN=$TOKEN; echo LEVEL=$LEVEL; echo POD=$POD_NAME; echo NODE=$NODE; \
                  echo BOTH=$BOTH; echo ENVFROM=$FROM_ENVFROM; echo CFG=$(cat $CFG_PATH); \
                  case \"$CFG_PATH\" in /etc/*) echo NOT-REWRITTEN;; esac; exit 3";
    create(&pods, &pod(&node, "env", json!({
        "automountServiceAccountToken": false,
        "containers": [{
            "name": "main", "image": "example.invalid/sh-test:1", "args": ["-c", script],
            "envFrom": [{ "configMapRef": { "name": "settings" } }],
            "env": [
                { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "token" } } },
                { "name": "LEVEL", "valueFrom": { "configMapKeyRef": { "name": "settings", "key": "level" } } },
                { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                { "name": "BOTH", "value": "$(POD_NAME)-$(LEVEL)" },
                { "name": "CFG_PATH", "value": "/etc/cfg/config.json" },
            ],
            "volumeMounts": [{ "name": "cfg", "mountPath": "/etc/cfg", "readOnly": true }],
        }],
        "volumes": [{ "name": "cfg", "secret": { "secretName": "creds" } }],
    }))).await?;
    let done = wait_pod(&pods, "env", "Failed with exit code 3", |p| {
        p.filter(|p| phase(p) == "Failed").cloned()
    })
    .await?;
    let main = container(&done, "main");
    assert_eq!(main["state"]["terminated"]["exitCode"], json!(3));
    assert_eq!(main["state"]["terminated"]["reason"], json!("Error"));
    assert!(
        main["containerID"]
            .as_str()
            .is_some_and(|id| id.starts_with("nodesim://"))
    );
    let status = done.status.clone().unwrap();
    assert!(status.start_time.is_some());
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(condition(&done, "Ready").as_deref(), Some("False"));
    assert_eq!(condition(&done, "PodScheduled").as_deref(), Some("True"));
    let log = sim
        .container_log(ns.name(), "env", "main")
        .unwrap_or_default();
    for line in [
        "TOKEN=s3cret-value",
        "LEVEL=debug",
        "POD=env",
        &format!("NODE={node}"),
        "BOTH=env-debug",
        "ENVFROM=yes",
        "CFG={\"k\":\"from-volume\"}",
    ] {
        assert!(
            log.contains(line),
            "{line:?} missing from the output:\n{log}"
        );
    }
    assert!(
        !log.contains("NOT-REWRITTEN"),
        "the mount path is rewritten:\n{log}"
    );

    pods.delete("env", &DeleteParams::default()).await?;
    wait_pod(&pods, "env", "removed", |p| p.is_none().then_some(())).await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_missing_secret_is_a_config_error_until_it_exists() -> anyhow::Result<()> {
    let cp = ControlPlane::shared_with_scheduling().await?;
    let ns = cp.test_namespace("nodesim-missing").await?;
    let client = cp.client();
    let sim = simulator(cp, ns.name(), |_| {}).await?;
    let node = sim.node_names()[0].clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    create(&pods, &pod(&node, "waits", json!({
        "containers": [{
            "name": "runner-ish", "image": "example.invalid/idle:1",
            "env": [{ "name": "X", "valueFrom": { "secretKeyRef": { "name": "later", "key": "x" } } }],
        }],
    }))).await?;
    let waiting = wait_pod(&pods, "waits", "CreateContainerConfigError", |p| {
        let c = container(p?, "runner-ish");
        (c["state"]["waiting"]["reason"] == json!("CreateContainerConfigError")).then_some(c)
    })
    .await?;
    assert!(
        waiting["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("later"),
        "the message names the Secret: {waiting}"
    );
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "later" }, "stringData": { "x": "1" },
    }))?;
    Api::<Secret>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &secret)
        .await?;
    let running = wait_pod(&pods, "waits", "Running and Ready", |p| {
        let p = p?;
        (phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True"))
            .then(|| p.clone())
    })
    .await?;
    let c = container(&running, "runner-ish");
    assert!(c["state"]["running"]["startedAt"].is_string());
    assert_eq!(c["ready"], json!(true));
    assert_eq!(c["started"], json!(true));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn deletion_stops_the_process_within_the_grace_period_then_removes_the_pod()
-> anyhow::Result<()> {
    let cp = ControlPlane::shared_with_scheduling().await?;
    let ns = cp.test_namespace("nodesim-delete").await?;
    let client = cp.client();
    let sim = simulator(cp, ns.name(), shell).await?;
    let node = sim.node_names()[0].clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let script = "trap 'echo got-term; exit 0' TERM; echo started; while true; do sleep 0.1; done";
    create(
        &pods,
        &pod(
            &node,
            "graceful",
            json!({
                "automountServiceAccountToken": false,
                "terminationGracePeriodSeconds": 60,
                "containers": [{ "name": "main", "image": "sh-test", "args": ["-c", script] }],
            }),
        ),
    )
    .await?;
    wait_pod(&pods, "graceful", "Running", |p| {
        (phase(p?) == "Running").then_some(())
    })
    .await?;
    let started = tokio::time::Instant::now() + support::WAIT;
    while !sim
        .container_log(ns.name(), "graceful", "main")
        .unwrap_or_default()
        .contains("started")
    {
        assert!(
            tokio::time::Instant::now() < started,
            "the process never printed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pods.delete("graceful", &DeleteParams::default()).await?;
    wait_pod(&pods, "graceful", "removed", |p| p.is_none().then_some(())).await?;
    let log = sim
        .container_log(ns.name(), "graceful", "main")
        .unwrap_or_default();
    assert!(log.contains("got-term"), "the process got SIGTERM:\n{log}");

    // A process that ignores SIGTERM is killed once the (short) grace period is over. It runs
    // through a process rule (a container named `manager`), with the rule's env.
    let stubborn = "trap '' TERM; echo $FROM_RULE; while true; do sleep 0.1; done";
    create(
        &pods,
        &pod(
            &node,
            "stubborn",
            json!({
                "automountServiceAccountToken": false,
                "containers": [{ "name": "manager", "image": "example.invalid/controller:1", "args": ["-c", stubborn] }],
            }),
        ),
    )
    .await?;
    wait_pod(&pods, "stubborn", "Running", |p| {
        (phase(p?) == "Running").then_some(())
    })
    .await?;
    let trapped = tokio::time::Instant::now() + support::WAIT;
    while !sim
        .container_log(ns.name(), "stubborn", "manager")
        .unwrap_or_default()
        .contains("rule-env")
    {
        assert!(
            tokio::time::Instant::now() < trapped,
            "the process rule's env never reached the process"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pods.delete(
        "stubborn",
        &DeleteParams {
            grace_period_seconds: Some(1),
            ..DeleteParams::default()
        },
    )
    .await?;
    wait_pod(&pods, "stubborn", "removed", |p| p.is_none().then_some(())).await?;
    assert_eq!(sim.running_pods(), 0);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn init_containers_complete_or_fail_the_pod() -> anyhow::Result<()> {
    let cp = ControlPlane::shared_with_scheduling().await?;
    let ns = cp.test_namespace("nodesim-init").await?;
    let client = cp.client();
    let sim = simulator(cp, ns.name(), |_| {}).await?;
    let node = sim.node_names()[0].clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let spec = json!({
        "initContainers": [
            { "name": "setup", "image": "example.invalid/init:1" },
            { "name": "copy", "image": "example.invalid/init:1" },
        ],
        "containers": [{ "name": "main", "image": "example.invalid/idle:1" }],
    });
    create(&pods, &pod(&node, "ok", spec.clone())).await?;
    let ok = wait_pod(&pods, "ok", "Running", |p| {
        p.filter(|p| phase(p) == "Running").cloned()
    })
    .await?;
    assert_eq!(
        init_container(&ok, "copy")["state"]["terminated"]["reason"],
        json!("Completed")
    );
    assert_eq!(condition(&ok, "Initialized").as_deref(), Some("True"));

    sim.fail_init_container(ns.name(), "armed", "copy", 2);
    create(&pods, &pod(&node, "armed", spec.clone())).await?;
    let failed = wait_pod(&pods, "armed", "Failed", |p| {
        p.filter(|p| phase(p) == "Failed").cloned()
    })
    .await?;
    let copy = init_container(&failed, "copy");
    assert_eq!(copy["state"]["terminated"]["exitCode"], json!(2));
    assert_eq!(copy["state"]["terminated"]["reason"], json!("Error"));
    assert_eq!(
        container(&failed, "main")["state"]["waiting"]["reason"],
        json!("PodInitializing")
    );
    assert_eq!(condition(&failed, "Initialized").as_deref(), Some("False"));

    let mut annotated = pod(&node, "annotated", spec);
    annotated.metadata.annotations =
        Some([(FAIL_INIT_ANNOTATION.to_owned(), "setup=7".to_owned())].into());
    create(&pods, &annotated).await?;
    let failed = wait_pod(&pods, "annotated", "Failed", |p| {
        p.filter(|p| phase(p) == "Failed").cloned()
    })
    .await?;
    assert_eq!(
        init_container(&failed, "setup")["state"]["terminated"]["exitCode"],
        json!(7)
    );
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn eviction_and_oom_kills_are_reported_as_a_kubelet_does() -> anyhow::Result<()> {
    let cp = ControlPlane::shared_with_scheduling().await?;
    let ns = cp.test_namespace("nodesim-faults").await?;
    let client = cp.client();
    let sim = simulator(cp, ns.name(), |_| {}).await?;
    let node = sim.node_names()[0].clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let idle = json!({ "containers": [{ "name": "main", "image": "example.invalid/idle:1" }] });
    for name in ["evicted", "oom"] {
        create(&pods, &pod(&node, name, idle.clone())).await?;
    }
    let mut always = pod(&node, "oom-restarts", idle.clone());
    always.spec.as_mut().unwrap().restart_policy = Some("Always".into());
    create(&pods, &always).await?;
    for name in ["evicted", "oom", "oom-restarts"] {
        wait_pod(&pods, name, "Running", |p| {
            (phase(p?) == "Running").then_some(())
        })
        .await?;
    }

    sim.evict_pod(ns.name(), "evicted").await?;
    let evicted = wait_pod(&pods, "evicted", "Failed/Evicted", |p| {
        p.filter(|p| phase(p) == "Failed").cloned()
    })
    .await?;
    let status = evicted.status.clone().unwrap();
    assert_eq!(status.reason.as_deref(), Some("Evicted"));
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("low on resource")
    );
    assert_eq!(
        container(&evicted, "main")["state"]["terminated"]["exitCode"],
        json!(137)
    );

    sim.oom_kill(ns.name(), "oom", "main").await?;
    let oom = wait_pod(&pods, "oom", "Failed", |p| {
        p.filter(|p| phase(p) == "Failed").cloned()
    })
    .await?;
    let t = &container(&oom, "main")["state"]["terminated"];
    assert_eq!(t["exitCode"], json!(137));
    assert_eq!(t["reason"], json!("OOMKilled"));

    sim.oom_kill(ns.name(), "oom-restarts", "main").await?;
    let restarted = wait_pod(&pods, "oom-restarts", "restarted after OOMKilled", |p| {
        let c = container(p?, "main");
        (c["restartCount"] == json!(1) && c["state"]["running"].is_object()).then_some(c)
    })
    .await?;
    assert_eq!(
        restarted["lastState"]["terminated"]["reason"],
        json!("OOMKilled")
    );

    let mut killed = pod(&node, "killed", idle.clone());
    killed.spec.as_mut().unwrap().restart_policy = Some("Never".into());
    create(&pods, &killed).await?;
    wait_pod(&pods, "killed", "Running", |p| {
        (phase(p?) == "Running").then_some(())
    })
    .await?;
    sim.kill_container(ns.name(), "killed", "main").await?;
    let killed = wait_pod(&pods, "killed", "Failed", |p| {
        p.filter(|p| phase(p) == "Failed").cloned()
    })
    .await?;
    let t = &container(&killed, "main")["state"]["terminated"];
    assert_eq!(t["exitCode"], json!(137));
    assert_eq!(t["reason"], json!("Error"));

    assert!(matches!(
        sim.oom_kill(ns.name(), "oom-restarts", "nope").await,
        Err(nodesim::FaultError::NoSuchContainer { .. })
    ));
    assert!(matches!(
        sim.evict_pod(ns.name(), "no-such-pod").await,
        Err(nodesim::FaultError::NoSuchPod { .. })
    ));

    // The evicted pod is removed once deleted.
    pods.delete("evicted", &DeleteParams::default()).await?;
    wait_pod(&pods, "evicted", "removed", |p| p.is_none().then_some(())).await?;
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_lost_node_goes_unknown_and_its_processes_die() -> anyhow::Result<()> {
    let cp = ControlPlane::shared_with_scheduling().await?;
    let ns = cp.test_namespace("nodesim-lost").await?;
    let client = cp.client();
    let sim = simulator(cp, ns.name(), shell).await?;
    let node = sim.node_names()[0].clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let marker = sim.workdir().join("alive");
    let script = format!(
        "while true; do date +%s%N > {}; sleep 0.1; done",
        marker.display()
    );
    create(
        &pods,
        &pod(
            &node,
            "doomed",
            json!({
                "automountServiceAccountToken": false,
                "containers": [{ "name": "main", "image": "sh-test", "args": ["-c", script] }],
            }),
        ),
    )
    .await?;
    wait_pod(&pods, "doomed", "Ready", |p| {
        (condition(p?, "Ready").as_deref() == Some("True")).then_some(())
    })
    .await?;

    sim.lose_node(&node).await?;
    let n = Api::<Node>::all(client.clone()).get(&node).await?;
    let ready = n
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "Unknown");
    assert!(
        n.spec
            .unwrap()
            .taints
            .unwrap()
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable")
    );
    let p = pods.get("doomed").await?;
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
    assert_eq!(
        phase(&p),
        "Running",
        "nobody reports the pod's end from a lost node"
    );

    // The process is gone: the marker stops changing.
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let mut last = std::fs::read_to_string(&marker).unwrap_or_default();
    let mut stable = 0;
    while stable < 10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = std::fs::read_to_string(&marker).unwrap_or_default();
        if now == last {
            stable += 1
        } else {
            stable = 0;
            last = now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the process still runs"
        );
    }
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_deployment_of_fifty_pods_runs_on_two_nodes_and_scales_to_zero() -> anyhow::Result<()> {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{ListParams, Patch, PatchParams};
    let cp = ControlPlane::shared_with_scheduling().await?;
    let ns = cp.test_namespace("nodesim-scale").await?;
    let client = cp.client();
    let mut config = nodesim::SimulatorConfig::with_nodes(&format!("sim-{}", ns.name()), 2);
    config.nodes.iter_mut().for_each(|n| n.pods = 30);
    let sim = nodesim::NodeSimulator::start(cp.config().clone(), config).await?;
    let nodes = sim.node_names();
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "many" },
        "spec": {
            "replicas": 50,
            "selector": { "matchLabels": { "app": "many" } },
            "template": {
                "metadata": { "labels": { "app": "many" } },
                "spec": {
                    "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{ "matchExpressions": [{
                            "key": "kubernetes.io/hostname", "operator": "In", "values": nodes,
                        }] }],
                    } } },
                    "tolerations": [{ "key": nodesim::SIMULATED_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule" }],
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{ "name": "main", "image": "example.invalid/idle:1" }],
                },
            },
        },
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    deployments
        .create(&PostParams::default(), &deployment)
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let selector = ListParams::default().labels("app=many");
    let deadline = tokio::time::Instant::now() + support::WAIT;
    let running = loop {
        let list = pods.list(&selector).await?.items;
        let ready: Vec<&Pod> = list
            .iter()
            .filter(|p| phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True"))
            .collect();
        if ready.len() == 50 {
            break list;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 50 pods are Running and Ready",
            ready.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for node in &nodes {
        let on = running
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
            .count();
        assert!(
            on <= 30,
            "{on} pods on {node}, more than its capacity of 30"
        );
    }
    deployments
        .patch(
            "many",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "replicas": 0 } })),
        )
        .await?;
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let left = pods.list(&selector).await?.items.len();
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} pods were never removed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(sim.running_pods(), 0);
    sim.shutdown().await;
    Ok(())
}
