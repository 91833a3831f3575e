//! AutoscalingRunnerSet reconciler against the real API server (behaviours 1, 2, 4, 6, 8 of
//! docs/architecture.md#integration-behaviours and the arc-rs additions: refused URL change, lost
//! scale set, bad input).

#[path = "reconciler_ars_support/mod.rs"]
mod support;

use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_reconcilers::crd::{AutoscalingListener, AutoscalingRunnerSet, EphemeralRunnerSet};
use k8s_reconcilers::names::{annotations, finalizers, labels, listener_name};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{Harness, ready_ars, spec, wait_for};

#[tokio::test]
async fn new_ars_gets_scale_set_runner_set_and_listener() -> anyhow::Result<()> {
    let h = Harness::start("ars-new").await?;
    h.pat_secret("gh", "ghp_test").await?;
    let url = "https://github.example.com/my-org/my-repo";
    let mut s = spec(url, "gh");
    s["runnerScaleSetLabels"] = json!(["linux", "gpu"]);
    h.create_ars("arc", s).await?;
    let ars = ready_ars(&h, "arc").await?;

    assert!(
        ars.finalizers()
            .iter()
            .any(|f| f == finalizers::AUTOSCALING_RUNNER_SET)
    );
    let a = ars.annotations();
    let id: i64 = a[annotations::RUNNER_SCALE_SET_ID].parse()?;
    assert_eq!(a[annotations::RUNNER_SCALE_SET_NAME], "arc");
    assert_eq!(a[annotations::RUNNER_GROUP_NAME], "Default");
    assert_eq!(ars.labels()[labels::ORGANIZATION], "my-org");
    assert_eq!(ars.labels()[labels::REPOSITORY], "my-repo");
    assert_eq!(
        ars.spec.runner_scale_set_name.as_deref(),
        Some("arc"),
        "defaulted name is persisted"
    );

    let set = h
        .service
        .with(|s| s.scale_sets.get(&id).cloned())
        .expect("scale set on the service");
    assert_eq!(set.name, "arc");
    assert_eq!(set.labels, ["arc", "linux", "gpu"]);

    let ers = h.api::<EphemeralRunnerSet>(h.ns()).get("arc").await?;
    assert_eq!(ers.spec.ephemeral_runner_spec.runner_scale_set_id, id);
    assert_eq!(ers.spec.ephemeral_runner_spec.github_config_url, url);
    assert_eq!(ers.owner_references()[0].name, "arc");
    assert_eq!(ers.labels()[labels::COMPONENT], "runner-set");
    assert!(ers.annotations().contains_key(annotations::INTEGRITY_HASH));

    let al_name = listener_name("arc", h.ns(), "", url);
    let al = h.api::<AutoscalingListener>(h.ctrl()).get(&al_name).await?;
    assert_eq!(al.spec.runner_scale_set_id, Some(id));
    assert_eq!(al.spec.max_runners, Some(5));
    assert_eq!(al.spec.autoscaling_runner_set_name.as_deref(), Some("arc"));
    assert_eq!(al.labels()[labels::COMPONENT], "runner-scale-set-listener");

    // Steady state: the listener is left alone.
    let uid = al.uid();
    let rv = al.resource_version();
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let again = h.api::<AutoscalingListener>(h.ctrl()).get(&al_name).await?;
    assert_eq!(
        (again.uid(), again.resource_version()),
        (uid, rv),
        "steady state touches nothing"
    );
    assert!(h.running());
    Ok(())
}

#[tokio::test]
async fn listener_only_change_recreates_only_the_listener() -> anyhow::Result<()> {
    let h = Harness::start("ars-change").await?;
    h.pat_secret("gh", "t").await?;
    let url = "https://github.example.com/org";
    h.create_ars("arc", spec(url, "gh")).await?;
    ready_ars(&h, "arc").await?;
    let al_name = listener_name("arc", h.ns(), "", url);
    let als = h.api::<AutoscalingListener>(h.ctrl());
    let old = wait_for("the listener", || async {
        Ok(als.get_opt(&al_name).await?)
    })
    .await?;
    let ers_uid = h.api::<EphemeralRunnerSet>(h.ns()).get("arc").await?.uid();
    let ars_api = h.api::<AutoscalingRunnerSet>(h.ns());

    // New bounds are written into the listener in place: the listener follows them itself.
    ars_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxRunners": 9, "minRunners": 2}})),
        )
        .await?;
    let updated = wait_for("the listener with maxRunners 9", || async {
        Ok(als
            .get_opt(&al_name)
            .await?
            .filter(|l| l.spec.max_runners == Some(9) && l.spec.min_runners == Some(2)))
    })
    .await?;
    assert_eq!(
        updated.uid(),
        old.uid(),
        "bounds do not replace the listener"
    );

    // Any other listener setting replaces it.
    ars_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"listenerMetrics": {"counters": {
                "gha_started_jobs_total": {"labels": ["repository"]}}}}})),
        )
        .await?;
    let new = wait_for("a new listener with the metrics", || async {
        Ok(als
            .get_opt(&al_name)
            .await?
            .filter(|l| l.uid() != old.uid() && l.spec.metrics.is_some()))
    })
    .await?;
    assert_eq!(new.spec.max_runners, Some(9));
    assert_eq!(
        h.api::<EphemeralRunnerSet>(h.ns()).get("arc").await?.uid(),
        ers_uid
    );

    // A runner image change patches the EphemeralRunnerSet in place.
    set_runner_image(&ars_api, url, "runner:v2").await?;
    let ers_api = h.api::<EphemeralRunnerSet>(h.ns());
    let ers = wait_for("the runner set to carry the new image", || async {
        let ers = ers_api.get("arc").await?;
        let image = ers
            .spec
            .ephemeral_runner_spec
            .pod_template
            .spec
            .as_ref()
            .and_then(|p| p.containers[0].image.clone());
        Ok((image.as_deref() == Some("runner:v2")).then_some(ers))
    })
    .await?;
    assert_eq!(ers.uid(), ers_uid, "patched in place");

    // Labels on the ARS propagate to the runner set.
    ars_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "ci"}}})),
        )
        .await?;
    wait_for("the label on the runner set", || async {
        Ok(ers_api
            .get("arc")
            .await?
            .labels()
            .get("team")
            .filter(|v| *v == "ci")
            .map(|_| ()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn deletion_removes_listener_runner_set_scale_set_and_protection() -> anyhow::Result<()> {
    let h = Harness::start("ars-delete").await?;
    h.pat_secret("gh", "t").await?;
    // A chart-made object protected by the cleanup finalizer.
    let protected = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("protected".into()),
            finalizers: Some(vec![finalizers::CLEANUP_PROTECTION.into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    h.api::<Secret>(h.ns())
        .create(&PostParams::default(), &protected)
        .await?;
    let url = "https://github.example.com/org";
    h.create_ars("arc", spec(url, "gh")).await?;
    let ars_api = h.api::<AutoscalingRunnerSet>(h.ns());
    ars_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {annotations::CLEANUP_GITHUB_SECRET_NAME: "protected"}}})),
        )
        .await?;
    let ars = ready_ars(&h, "arc").await?;
    let id: i64 = ars.annotations()[annotations::RUNNER_SCALE_SET_ID].parse()?;
    let al_name = listener_name("arc", h.ns(), "", url);
    wait_for("the listener", || async {
        Ok(h.api::<AutoscalingListener>(h.ctrl())
            .get_opt(&al_name)
            .await?)
    })
    .await?;

    ars_api.delete("arc", &DeleteParams::default()).await?;
    wait_for("the ARS to be gone", || async {
        Ok(ars_api.get_opt("arc").await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        h.api::<AutoscalingListener>(h.ctrl())
            .get_opt(&al_name)
            .await?
            .is_none()
    );
    assert!(
        h.api::<EphemeralRunnerSet>(h.ns())
            .get_opt("arc")
            .await?
            .is_none()
    );
    assert!(
        h.service.with(|s| !s.scale_sets.contains_key(&id)),
        "scale set deleted on the service"
    );
    let secret = h.api::<Secret>(h.ns()).get("protected").await?;
    assert!(
        !secret
            .finalizers()
            .iter()
            .any(|f| f == finalizers::CLEANUP_PROTECTION)
    );
    // Order: the scale set was deleted after the listener was gone.
    let calls = h.service.with(|s| s.calls.clone());
    assert_eq!(calls.last(), Some(&"delete_runner_scale_set"), "{calls:?}");
    Ok(())
}

#[tokio::test]
async fn deletion_without_a_scale_set_id_completes() -> anyhow::Result<()> {
    let h = Harness::start("ars-noid").await?;
    // No credentials Secret: the scale set is never created.
    h.create_ars("arc", spec("https://github.example.com/org", "missing"))
        .await?;
    let ars_api = h.api::<AutoscalingRunnerSet>(h.ns());
    wait_for("the finalizer", || async {
        let ars = ars_api.get("arc").await?;
        Ok(ars
            .finalizers()
            .iter()
            .any(|f| f == finalizers::AUTOSCALING_RUNNER_SET)
            .then_some(()))
    })
    .await?;
    ars_api.delete("arc", &DeleteParams::default()).await?;
    wait_for("the ARS to be gone", || async {
        Ok(ars_api.get_opt("arc").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn missing_secret_gets_a_condition_and_event_then_recovers() -> anyhow::Result<()> {
    let h = Harness::start("ars-badsecret").await?;
    h.create_ars("arc", spec("https://github.example.com/org", "gh"))
        .await?;
    let ars_api = h.api::<AutoscalingRunnerSet>(h.ns());
    let message = ready_false(&ars_api, "arc").await?;
    assert_eq!(message.0, "InvalidConfiguration");
    assert!(
        message.1.contains("Secret") && message.1.contains("gh") && message.1.contains("not found"),
        "{}",
        message.1
    );
    let events = h.api::<Event>(h.ns());
    wait_for("a Warning Event naming the Secret", || async {
        let list = events.list(&ListParams::default()).await?;
        Ok(list
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("InvalidConfiguration")
                    && e.message.as_deref().is_some_and(|m| m.contains("gh"))
            })
            .map(|_| ()))
    })
    .await?;

    // A Secret without usable keys is named with the fix.
    let bad = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("gh".into()),
            ..Default::default()
        },
        string_data: Some([("github_app_id".to_owned(), "1".to_owned())].into()),
        ..Default::default()
    };
    h.api::<Secret>(h.ns())
        .create(&PostParams::default(), &bad)
        .await?;
    // A missing Secret is retried every few minutes (Secrets are not watched); any change of
    // the ARS starts a pass at once.
    poke(&h, "arc", "1").await?;
    wait_for("a condition about the missing keys", || async {
        let ars = ars_api.get("arc").await?;
        Ok(ars
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| {
                c.into_iter()
                    .find(|c| c.message.contains("no credentials provided"))
            })
            .map(|_| ()))
    })
    .await?;

    h.api::<Secret>(h.ns())
        .delete("gh", &DeleteParams::default())
        .await?;
    h.pat_secret("gh", "t").await?;
    poke(&h, "arc", "2").await?;
    let ars = ready_ars(&h, "arc").await?;
    let ready = ars.status.and_then(|s| s.conditions).unwrap_or_default();
    wait_for("Ready=True", || async {
        let ars = ars_api.get("arc").await?;
        Ok(ars
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| {
                c.into_iter()
                    .find(|c| c.type_ == "Ready" && c.status == "True")
            })
            .map(|_| ()))
    })
    .await?;
    let _ = ready;
    assert!(h.running(), "no crash");
    Ok(())
}

#[tokio::test]
async fn changed_config_url_is_refused_with_a_condition() -> anyhow::Result<()> {
    let h = Harness::start("ars-url").await?;
    h.pat_secret("gh", "t").await?;
    h.create_ars("arc", spec("https://github.example.com/org-a", "gh"))
        .await?;
    let ars = ready_ars(&h, "arc").await?;
    let id = ars.annotations()[annotations::RUNNER_SCALE_SET_ID].clone();
    let ars_api = h.api::<AutoscalingRunnerSet>(h.ns());
    ars_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"githubConfigUrl": "https://github.example.com/org-b"}})),
        )
        .await?;
    let condition = wait_for("a ConfigUrlChanged condition", || async {
        let ars = ars_api.get("arc").await?;
        let phase = ars
            .status
            .as_ref()
            .map(|s| s.phase.clone())
            .unwrap_or_default();
        Ok(ars
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.reason == "ConfigUrlChanged"))
            .map(|c| (c, phase)))
    })
    .await?;
    assert_eq!(condition.0.status, "False");
    assert_eq!(condition.1, "Failed");
    assert!(condition.0.message.contains("org-a") && condition.0.message.contains("org-b"));
    let ars = ars_api.get("arc").await?;
    assert_eq!(
        ars.annotations()[annotations::RUNNER_SCALE_SET_ID],
        id,
        "scale set kept"
    );
    assert_eq!(
        h.service.with(|s| s.scale_sets.len()),
        1,
        "no second scale set"
    );
    Ok(())
}

#[tokio::test]
async fn lost_scale_set_is_created_again() -> anyhow::Result<()> {
    let h = Harness::start("ars-lost").await?;
    h.pat_secret("gh", "t").await?;
    h.create_ars("arc", spec("https://github.example.com/org", "gh"))
        .await?;
    let ars = ready_ars(&h, "arc").await?;
    let old: i64 = ars.annotations()[annotations::RUNNER_SCALE_SET_ID].parse()?;
    h.service.with(|s| s.scale_sets.clear());
    // Any event makes the controller look again (a periodic check does so in steady state).
    h.api::<AutoscalingRunnerSet>(h.ns())
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"poke": "1"}}})),
        )
        .await?;
    let ers_api = h.api::<EphemeralRunnerSet>(h.ns());
    let new = wait_for("a new scale set id on the runner set", || async {
        let ers = ers_api.get("arc").await?;
        let id = ers.spec.ephemeral_runner_spec.runner_scale_set_id;
        Ok((id != old && id > 0).then_some(id))
    })
    .await?;
    assert!(h.service.with(|s| s.scale_sets.contains_key(&new)));
    Ok(())
}

#[tokio::test]
async fn runner_group_is_looked_up_and_recorded() -> anyhow::Result<()> {
    let h = Harness::start("ars-group").await?;
    h.pat_secret("gh", "t").await?;
    let group_id = h.service.add_group("my-group");
    let mut s = spec("https://github.example.com/org", "gh");
    s["runnerGroup"] = json!("my-group");
    h.create_ars("arc", s).await?;
    let ars = ready_ars(&h, "arc").await?;
    assert_eq!(
        ars.annotations()[annotations::RUNNER_GROUP_NAME],
        "my-group"
    );
    let id: i64 = ars.annotations()[annotations::RUNNER_SCALE_SET_ID].parse()?;
    assert_eq!(
        h.service.with(|s| s.scale_sets[&id].runner_group_id),
        group_id
    );

    // Renaming the scale set updates the service and the annotation.
    h.api::<AutoscalingRunnerSet>(h.ns())
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"runnerScaleSetName": "renamed"}})),
        )
        .await?;
    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    wait_for("the new name annotation", || async {
        let ars = api.get("arc").await?;
        Ok((ars
            .annotations()
            .get(annotations::RUNNER_SCALE_SET_NAME)
            .map(String::as_str)
            == Some("renamed"))
        .then_some(()))
    })
    .await?;
    assert_eq!(
        h.service.with(|s| s.scale_sets[&id].name.clone()),
        "renamed"
    );
    Ok(())
}

/// Changes an annotation of the ARS, which starts a reconcile pass at once.
async fn poke(h: &Harness, name: &str, value: &str) -> anyhow::Result<()> {
    h.api::<AutoscalingRunnerSet>(h.ns())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"test/poke": value}}})),
        )
        .await?;
    Ok(())
}

/// The `Ready=False` condition message once its reason is `InvalidConfiguration`.
async fn invalid_condition(h: &Harness, name: &str) -> anyhow::Result<String> {
    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    wait_for("an InvalidConfiguration condition", || async {
        let ars = api.get(name).await?;
        Ok(ars
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| {
                c.into_iter().find(|c| {
                    c.type_ == "Ready" && c.status == "False" && c.reason == "InvalidConfiguration"
                })
            })
            .map(|c| c.message))
    })
    .await
}

async fn warning_event(h: &Harness, object: &str, needle: &str) -> anyhow::Result<()> {
    suites::warning_event(&h.client, h.ns(), object, None, needle, support::TIMEOUT)
        .await
        .map(drop)
}

#[tokio::test]
async fn invalid_fields_get_a_condition_and_an_event_without_a_crash_loop() -> anyhow::Result<()> {
    let h = Harness::start("ars-invalid").await?;
    h.pat_secret("gh", "t").await?;

    let mut bounds = spec("https://github.example.com/org", "gh");
    bounds["minRunners"] = json!(5);
    bounds["maxRunners"] = json!(2);
    h.create_ars("bounds", bounds).await?;
    let message = invalid_condition(&h, "bounds").await?;
    assert!(
        message.contains("minRunners 5 cannot be greater than maxRunners 2")
            && message.contains("lower minRunners or raise maxRunners"),
        "{message}"
    );
    warning_event(&h, "bounds", "minRunners 5").await?;

    h.create_ars("url", spec("github.example.com/org", "gh"))
        .await?;
    let message = invalid_condition(&h, "url").await?;
    assert!(
        message.contains("github.example.com/org") && message.contains("https://"),
        "the message names the value and the fix: {message}"
    );
    warning_event(&h, "url", "github.example.com/org").await?;

    let mut no_runner = spec("https://github.example.com/org", "gh");
    no_runner["template"]["spec"]["containers"][0]["name"] = json!("main");
    h.create_ars("norunner", no_runner).await?;
    let message = invalid_condition(&h, "norunner").await?;
    assert!(
        message.contains("spec.template.spec.containers")
            && message.contains("[\"main\"]")
            && message.contains("name the runner container \"runner\""),
        "{message}"
    );
    warning_event(&h, "norunner", "no container named").await?;

    for name in ["bounds", "url", "norunner"] {
        let ars = h.api::<AutoscalingRunnerSet>(h.ns()).get(name).await?;
        assert!(
            !ars.annotations()
                .contains_key(annotations::RUNNER_SCALE_SET_ID),
            "no scale set is created from invalid input"
        );
    }
    assert!(
        h.service.with(|s| s.scale_sets.is_empty()),
        "nothing reached the service"
    );

    // Fixed input recovers without a restart.
    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    api.patch(
        "bounds",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"minRunners": 1}})),
    )
    .await?;
    api.patch(
        "url",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"githubConfigUrl": "https://github.example.com/org"}})),
    )
    .await?;
    api.patch(
        "norunner",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": spec("https://github.example.com/org", "gh")})),
    )
    .await?;
    ready_ars(&h, "bounds").await?;
    ready_ars(&h, "url").await?;
    ready_ars(&h, "norunner").await?;
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}

/// Issue #20, case (a): a `runnerScaleSetName` of 213 characters, which the chart makes the
/// AutoscalingRunnerSet's name, is refused at admission with a message naming the field, the
/// value and the fix, before anything reaches the service; so are 46 and 70 characters (no name
/// ARC can run either: the listener name would not fit in its label value). 45 characters, the
/// longest ARC runs, is admitted, runs with the same derived names as ARC's, and deletes cleanly.
#[tokio::test]
async fn too_long_names_are_refused_at_admission() -> anyhow::Result<()> {
    let h = Harness::start("ars-longname").await?;
    h.pat_secret("gh", "t").await?;
    let url = "https://github.example.com/org";
    for len in [213, 70, 46] {
        let name = format!("n{}", "a".repeat(len - 1));
        let mut s = spec(url, "gh");
        s["runnerScaleSetName"] = json!(name);
        let Err(refused) = h.create_ars(&name, s).await else {
            anyhow::bail!("an AutoscalingRunnerSet named with {len} characters was admitted");
        };
        let Some(kube::Error::Api(status)) = refused.downcast_ref::<kube::Error>() else {
            anyhow::bail!("not refused by the API server: {refused:?}");
        };
        assert_eq!(status.code, 422, "{status:?}");
        assert!(
            status.message.contains(&format!("\"{name}\" is invalid"))
                && status
                    .message
                    .contains("metadata.name may have at most 45 characters")
                && status.message.contains("choose a shorter name"),
            "{}",
            status.message
        );
    }
    assert!(
        h.service.with(|s| s.scale_sets.is_empty()),
        "nothing reached the service"
    );

    let name = format!("n{}", "a".repeat(44));
    h.create_ars(&name, spec(url, "gh")).await?;
    ready_ars(&h, &name).await?;
    let ers = h.api::<EphemeralRunnerSet>(h.ns()).get(&name).await?;
    assert_eq!(ers.labels()[labels::SCALE_SET_NAME], name);
    let listener = listener_name(&name, h.ns(), "", url);
    assert_eq!(listener.len(), 63, "ARC's name, at the label-value limit");
    h.api::<AutoscalingListener>(h.ctrl())
        .get(&listener)
        .await?;
    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    api.delete(&name, &DeleteParams::default()).await?;
    wait_for("the ARS to be gone", || async {
        Ok(api.get_opt(&name).await?.is_none().then_some(()))
    })
    .await?;
    assert!(
        h.service.with(|s| s.scale_sets.is_empty()),
        "the scale set was deleted with the ARS"
    );
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}

/// Issue #20, case (b): a `githubConfigUrl` whose host refuses connections, over real HTTP with
/// the production connector. The ARS gets `Ready=False`, reason `ServiceUnreachable`, with a
/// message naming the field, the URL and the fix, and a Warning Event; it is retried in minutes,
/// not in a silent loop (each pass costs the client's own five attempts); and a fixed URL (the
/// Actions-service emulator) is picked up at once.
#[tokio::test]
async fn an_unreachable_host_is_reported_and_retried_slowly_until_fixed() -> anyhow::Result<()> {
    use actions_emulator::{DEFAULT_PAT, Emulator, EmulatorConfig};
    use k8s_reconcilers::metrics::ReconcileLabels;
    let (h, metrics) = over_http("ars-unreach").await?;
    h.pat_secret("gh", DEFAULT_PAT).await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{closed}/org");
    h.create_ars("arc", spec(&url, "gh")).await?;

    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    let (reason, message) = ready_false(&api, "arc").await?;
    assert_eq!(reason, "ServiceUnreachable", "{message}");
    assert!(
        message.contains("spec.githubConfigUrl")
            && message.contains(&url)
            && message.contains("check the host and port"),
        "the message names the field, the value and the fix: {message}"
    );
    suites::warning_event(
        &h.client,
        h.ns(),
        "arc",
        Some("ServiceUnreachable"),
        &url,
        support::TIMEOUT,
    )
    .await?;

    // The condition's write starts one more pass, which takes the client's five attempts
    // (about 15 s, longer on a loaded machine); the window starts once it is counted, since
    // from then the next pass is a minute away. A window that held that pass left no room for
    // any other trigger (a watch that fails under load relists and re-queues every object);
    // a retry loop makes passes back to back, two or more in the window.
    let failed = || {
        metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                controller: "autoscalingrunnerset".into(),
                result: "service".into(),
            })
            .get()
    };
    wait_for("the pass the condition's write started", || async {
        Ok((failed() >= 2).then_some(()))
    })
    .await?;
    let before = failed();
    tokio::time::sleep(std::time::Duration::from_secs(40)).await;
    let passes = failed() - before;
    assert!(passes <= 1, "{passes} failed passes in 40 s: a retry loop");

    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    api.patch(
        "arc",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"githubConfigUrl": emulator.org_url("org")}})),
    )
    .await?;
    ready_ars(&h, "arc").await?;
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}

/// The harness with the production connector (real HTTP to the service) and its metrics.
async fn over_http(
    prefix: &str,
) -> anyhow::Result<(Harness, std::sync::Arc<k8s_reconcilers::metrics::Metrics>)> {
    let metrics = std::sync::Arc::new(k8s_reconcilers::metrics::Metrics::default());
    let shared = metrics.clone();
    let h = Harness::start_with(prefix, move |o| {
        o.connector =
            std::sync::Arc::new(k8s_reconcilers::github::ActionsClientConnector::new("test"));
        o.metrics = shared;
    })
    .await?;
    Ok((h, metrics))
}

/// The reason and message of the ARS's `Ready=False` condition, once it has one.
async fn ready_false(
    api: &kube::Api<AutoscalingRunnerSet>,
    name: &str,
) -> anyhow::Result<(String, String)> {
    wait_for("a Ready=False condition", || async {
        let ars = api.get(name).await?;
        Ok(ars
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| {
                c.into_iter()
                    .find(|c| c.type_ == "Ready" && c.status == "False")
            })
            .map(|c| (c.reason, c.message)))
    })
    .await
}

/// A PAT the service rejects is reported once and retried slowly: the condition's write starts
/// one more pass, and no pass after it writes again (the bad-input campaign found this input
/// reconciled five times a second).
#[tokio::test]
async fn a_rejected_pat_is_reported_without_a_retry_loop() -> anyhow::Result<()> {
    use actions_emulator::{Emulator, EmulatorConfig};
    let (h, _) = over_http("ars-badpat").await?;
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    h.pat_secret("gh", "ghp_rejectedByTheEmulator00000000000000")
        .await?;
    h.create_ars("arc", spec(&emulator.org_url("org"), "gh"))
        .await?;
    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    let (reason, message) = ready_false(&api, "arc").await?;
    assert_eq!(reason, "CredentialsRejected", "{message}");
    let version = || async {
        anyhow::Ok(
            api.get("arc")
                .await?
                .metadata
                .resource_version
                .unwrap_or_default(),
        )
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let settled = version().await?;
    let before = emulator.calls().len();
    tokio::time::sleep(std::time::Duration::from_secs(20)).await;
    assert_eq!(version().await?, settled, "no write to the ARS in 20 s");
    let calls = emulator.calls().len() - before;
    assert!(calls <= 4, "{calls} service calls in 20 s: a retry loop");
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}

/// Issue #20 item 2, AutoscalingRunnerSet: its deletion needs the service (DeleteRunnerScaleSet),
/// and the credentials Secret is gone. After the grace period the finalizer goes anyway and the
/// scale set left on the service is reported: a Warning Event naming it and the metric.
#[tokio::test]
async fn deletion_completes_when_the_service_cannot_be_called() -> anyhow::Result<()> {
    use k8s_reconcilers::metrics::Metrics;
    use std::sync::Arc;
    let metrics = Arc::new(Metrics::default());
    let shared = metrics.clone();
    let h = Harness::start_with("ars-delbound", move |o| {
        o.deletion_grace = std::time::Duration::from_secs(5);
        o.metrics = shared;
    })
    .await?;
    h.pat_secret("gh", "t").await?;
    h.create_ars("arc", spec("https://github.example.com/org", "gh"))
        .await?;
    let ars = ready_ars(&h, "arc").await?;
    let id: i64 = ars.annotations()[annotations::RUNNER_SCALE_SET_ID].parse()?;

    h.api::<Secret>(h.ns())
        .delete("gh", &DeleteParams::default())
        .await?;
    // Past the reuse of the resolved credentials.
    tokio::time::sleep(k8s_reconcilers::github::RESOLVED_CONFIG_TTL).await;
    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    api.delete("arc", &DeleteParams::default()).await?;
    wait_for("the ARS to be gone", || async {
        Ok(api.get_opt("arc").await?.is_none().then_some(()))
    })
    .await?;
    let message = suites::warning_event(
        &h.client,
        h.ns(),
        "arc",
        Some("CleanupAbandoned"),
        &format!("runner scale set {id} on the service"),
        support::TIMEOUT,
    )
    .await?;
    assert!(message.contains("Secret"), "the Event says why: {message}");
    assert!(
        h.service.with(|s| s.scale_sets.contains_key(&id)),
        "the scale set could not be deleted; it is reported, not hidden"
    );
    assert_eq!(
        suites::abandoned_cleanups(&metrics, "autoscalingrunnerset"),
        1
    );
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}

/// Answers of the service the user has to act on: a runner group that does not exist (it may be
/// created any time: reported and retried in minutes) and a scale set the service refuses (400:
/// reported, and not asked again until the ARS changes). Each gets the condition and Event naming
/// the field, the value and the fix, and a fix is picked up.
#[tokio::test]
async fn service_refusals_name_the_field_and_wait_for_a_fix() -> anyhow::Result<()> {
    let h = Harness::start("ars-refused").await?;
    h.pat_secret("gh", "t").await?;
    let mut s = spec("https://github.example.com/org", "gh");
    s["runnerGroup"] = json!("gpu-runners");
    h.create_ars("grouped", s).await?;
    let message = invalid_condition(&h, "grouped").await?;
    assert!(
        message.contains("spec.runnerGroup \"gpu-runners\"")
            && message.contains("create it in the settings"),
        "{message}"
    );
    warning_event(&h, "grouped", "gpu-runners").await?;
    h.service.add_group("gpu-runners");
    poke(&h, "grouped", "1").await?;
    ready_ars(&h, "grouped").await?;

    let creates = || {
        h.service.with(|s| {
            s.calls
                .iter()
                .filter(|c| **c == "create_runner_scale_set")
                .count()
        })
    };
    let before = creates();
    h.service
        .with(|s| s.refused_names.insert("refused".to_owned()));
    h.create_ars("refused", spec("https://github.example.com/org", "gh"))
        .await?;
    let message = invalid_condition(&h, "refused").await?;
    assert!(
        message.contains("refused runner scale set \"refused\"")
            && message.contains("change spec.runnerScaleSetName"),
        "{message}"
    );
    warning_event(&h, "refused", "change spec.runnerScaleSetName").await?;
    // Two asks: the refused one, and the one of the pass the condition's write starts, which
    // finds the condition as it is and writes nothing, so no event starts another.
    wait_for("the pass the condition's write started", || async {
        Ok((creates() >= before + 2).then_some(()))
    })
    .await?;
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    assert_eq!(
        creates(),
        before + 2,
        "not asked again until the ARS changes"
    );
    h.api::<AutoscalingRunnerSet>(h.ns())
        .patch(
            "refused",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"runnerScaleSetName": "accepted"}})),
        )
        .await?;
    ready_ars(&h, "refused").await?;
    assert!(
        h.service
            .with(|s| s.scale_sets.values().any(|set| set.name == "accepted")),
        "the fixed name is created"
    );
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}

#[tokio::test]
async fn an_ars_of_another_minor_version_is_deleted() -> anyhow::Result<()> {
    let h = Harness::start_with("ars-version", |o| o.build_version = "0.14.2".into()).await?;
    h.pat_secret("gh", "t").await?;
    h.create_ars("current", spec("https://github.example.com/org", "gh"))
        .await?;
    let old: AutoscalingRunnerSet = serde_json::from_value(json!({
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "AutoscalingRunnerSet",
        "metadata": {"name": "old", "labels": {"app.kubernetes.io/version": "0.13.1"}},
        "spec": spec("https://github.example.com/org", "gh"),
    }))?;
    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    api.create(&PostParams::default(), &old).await?;
    wait_for("the 0.13 ARS to be deleted", || async {
        Ok(api.get_opt("old").await?.is_none().then_some(()))
    })
    .await?;
    ready_ars(&h, "current").await?;
    assert!(
        h.service
            .with(|s| s.scale_sets.values().all(|set| set.name != "old")),
        "no scale set for the rejected version"
    );
    Ok(())
}

#[tokio::test]
async fn drain_policy_holds_a_spec_change_until_the_busy_runner_is_done() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_reconcilers::crd::EphemeralRunner;
    let h = Harness::start_with("ars-drain", |o| {
        o.drift_policy = scaleset_core::autoscaling_runner_set::DriftPolicy::Drain;
    })
    .await?;
    h.pat_secret("gh", "t").await?;
    let url = "https://github.example.com/org";
    h.create_ars("arc", spec(url, "gh")).await?;
    ready_ars(&h, "arc").await?;
    let ers_api = h.api::<EphemeralRunnerSet>(h.ns());
    let ers_uid = ers_api.get("arc").await?.uid();
    // The listener asks for one runner, which starts.
    ers_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1, "patchID": 1}})),
        )
        .await?;
    let ers_runners = h.api::<EphemeralRunner>(h.ns());
    let pods = h.api::<Pod>(h.ns());
    let runner = wait_for("a registered runner", || async {
        let list = suites::runners_with_registration(&ers_runners, &pods).await?;
        Ok(list.into_iter().find(|(_, id)| *id > 0).map(|(er, _)| er))
    })
    .await?;
    let name = runner.name_any();
    wait_for("the runner pod", || async {
        Ok(pods.get_opt(&name).await?)
    })
    .await?;
    let running = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}],
        "containerStatuses": [{"name": "runner", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&running))
        .await?;
    let ars_api = h.api::<AutoscalingRunnerSet>(h.ns());
    wait_for("the ARS to mirror one running runner", || async {
        let s = ars_api.get("arc").await?.status.unwrap_or_default();
        Ok((s.running_ephemeral_runners == 1 && s.phase == "Running").then_some(()))
    })
    .await?;

    set_runner_image(&ars_api, url, "runner:v2").await?;
    let als = h.api::<AutoscalingListener>(h.ctrl());
    wait_for("the listener to be removed", || async {
        Ok(als
            .list(&ListParams::default())
            .await?
            .items
            .is_empty()
            .then_some(()))
    })
    .await?;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(
        als.list(&ListParams::default()).await?.items.is_empty(),
        "no listener while a runner is busy"
    );
    let image = |ers: &EphemeralRunnerSet| {
        ers.spec
            .ephemeral_runner_spec
            .pod_template
            .spec
            .as_ref()
            .and_then(|p| p.containers[0].image.clone())
    };
    assert_eq!(
        image(&ers_api.get("arc").await?).as_deref(),
        Some("ghcr.io/actions/actions-runner:latest"),
        "the runner set keeps the old spec while its runner works"
    );

    // The job ends; the runner goes, then the runner set is patched and the listener returns.
    let done = json!({"status": {"phase": "Succeeded", "containerStatuses": [{"name": "runner", "image": "x",
        "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&done))
        .await?;
    let ers = wait_for("the runner set on the new spec", || async {
        let ers = ers_api.get("arc").await?;
        Ok((image(&ers).as_deref() == Some("runner:v2")).then_some(ers))
    })
    .await?;
    assert_eq!(ers.uid(), ers_uid, "patched in place");
    listener_back(&als).await?;
    assert!(
        ers_runners
            .list(&ListParams::default())
            .await?
            .items
            .is_empty(),
        "patch 1 was acted on: no runner for the finished job's stale replicas"
    );
    Ok(())
}

/// Patches the runner template of ARS `arc` to run `image`.
async fn set_runner_image(
    ars_api: &kube::Api<AutoscalingRunnerSet>,
    url: &str,
    image: &str,
) -> anyhow::Result<()> {
    let mut s = spec(url, "gh");
    s["template"]["spec"]["containers"][0]["image"] = json!(image);
    ars_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": s["template"]}})),
        )
        .await?;
    Ok(())
}

/// Waits until a listener exists again.
async fn listener_back(
    als: &kube::Api<AutoscalingListener>,
) -> anyhow::Result<AutoscalingListener> {
    wait_for("the listener back", || async {
        Ok(als
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .next())
    })
    .await
}

fn scale_set_reads(h: &Harness) -> usize {
    h.service.with(|s| {
        s.calls
            .iter()
            .filter(|c| **c == "get_runner_scale_set_by_id")
            .count()
    })
}

#[tokio::test]
async fn runner_changes_do_not_reread_the_scale_set() -> anyhow::Result<()> {
    let h = Harness::start("ars-reads").await?;
    h.pat_secret("gh", "t").await?;
    h.create_ars("arc", spec("https://github.example.com/org", "gh"))
        .await?;
    ready_ars(&h, "arc").await?;
    let ars_api = h.api::<AutoscalingRunnerSet>(h.ns());
    let ers_api = h.api::<EphemeralRunnerSet>(h.ns());
    let before = scale_set_reads(&h);
    assert!(before > 0, "the scale set was read once at least");
    // The listener scales the runner set; its runners come and their counts reach the ARS
    // status through one reconcile per runner-set change.
    for replicas in [2, 4] {
        ers_api
            .patch(
                "arc",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": replicas, "patchID": replicas}})),
            )
            .await?;
        wait_for("the ARS status to count the runners", || async {
            let ars = ars_api.get("arc").await?;
            Ok(ars
                .status
                .as_ref()
                .is_some_and(|s| s.current_runners == replicas)
                .then_some(()))
        })
        .await?;
    }
    assert_eq!(
        scale_set_reads(&h),
        before,
        "runner-set changes reuse the verified scale set"
    );
    // New runner bounds reach the listener and leave the scale set as it is.
    ars_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"minRunners": 1, "maxRunners": 7}})),
        )
        .await?;
    let als = h.api::<AutoscalingListener>(h.ctrl());
    wait_for("the listener's new bounds", || async {
        let list = als.list(&ListParams::default()).await?.items;
        Ok(list
            .iter()
            .any(|l| (l.spec.min_runners, l.spec.max_runners) == (Some(1), Some(7)))
            .then_some(()))
    })
    .await?;
    assert_eq!(
        scale_set_reads(&h),
        before,
        "new bounds reuse the verified scale set"
    );
    // A change to the ARS itself makes the next reconcile read it again.
    ars_api
        .patch(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"poke": "1"}}})),
        )
        .await?;
    wait_for("a fresh read after the ARS changed", || async {
        Ok((scale_set_reads(&h) > before).then_some(()))
    })
    .await?;
    Ok(())
}

/// Quirk Q6 (docs/architecture.md#arc-reconciler-quirks) / ARC#4242: runners that report a
/// deprecated version (the runner set's phase `Outdated`) park the ARS: phase `Outdated`, no
/// listener, no runner set, and nothing comes back until the spec changes; a new runner image then
/// brings a fresh runner set and the listener back.
#[tokio::test]
async fn outdated_runners_park_the_ars_until_the_spec_changes() -> anyhow::Result<()> {
    let h = Harness::start("ars-outdated").await?;
    h.pat_secret("gh", "t").await?;
    let url = "https://github.example.com/org";
    h.create_ars("arc", spec(url, "gh")).await?;
    ready_ars(&h, "arc").await?;
    let ars_api = h.api::<AutoscalingRunnerSet>(h.ns());
    let ers_api = h.api::<EphemeralRunnerSet>(h.ns());
    let als = h.api::<AutoscalingListener>(h.ctrl());
    let old_uid = ers_api.get("arc").await?.uid();

    // The runner set controller sets this phase once any runner exits with code 7.
    ers_api
        .patch_status(
            "arc",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Outdated"}})),
        )
        .await?;
    wait_for("phase Outdated, no listener, no runner set", || async {
        let phase = ars_api.get("arc").await?.status.unwrap_or_default().phase;
        let listeners = als.list(&ListParams::default()).await?.items.len();
        let ers = ers_api.get_opt("arc").await?;
        Ok((phase == "Outdated" && listeners == 0 && ers.is_none()).then_some(()))
    })
    .await?;
    warning_event(&h, "arc", "deprecated runner version").await?;
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(
        ers_api.get_opt("arc").await?.is_none()
            && als.list(&ListParams::default()).await?.items.is_empty(),
        "nothing is created again while Outdated"
    );
    assert_eq!(
        ars_api.get("arc").await?.status.unwrap_or_default().phase,
        "Outdated"
    );

    set_runner_image(&ars_api, url, "runner:v2").await?;
    ready_ars(&h, "arc").await?;
    let ers = ers_api.get("arc").await?;
    assert_ne!(ers.uid(), old_uid, "a fresh runner set");
    assert_ne!(
        ers.status.map(|s| s.phase).as_deref(),
        Some("Outdated"),
        "the fresh set is not outdated"
    );
    listener_back(&als).await?;
    Ok(())
}

/// Issue #19: a rate-limited service (GitHub's secondary limit, a 403 that names no wait) is not
/// a credential failure: no `Ready=False` condition, a `RateLimited` Warning Event without the
/// PAT, no service call while the limit lasts (the next pass waits at least a minute), and once
/// the limit lifts the next pass registers the scale set.
#[tokio::test]
async fn a_rate_limited_service_is_waited_out_not_reported_as_bad_credentials() -> anyhow::Result<()>
{
    use actions_emulator::{Emulator, EmulatorConfig, Fault, FaultKind};
    use secrecy::ExposeSecret;
    let (h, _) = over_http("ars-ratelimit").await?;
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    emulator.inject(Fault::everywhere(FaultKind::secondary_rate_limit(403)));
    let pat = emulator.pat();
    h.pat_secret("gh", pat.expose_secret()).await?;
    h.create_ars("arc", spec(&emulator.org_url("org"), "gh"))
        .await?;
    let message = suites::warning_event(
        &h.client,
        h.ns(),
        "arc",
        Some("RateLimited"),
        "rate limited",
        support::TIMEOUT,
    )
    .await?;
    assert!(!message.contains(pat.expose_secret()), "{message}");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let before = emulator.calls().len();
    tokio::time::sleep(std::time::Duration::from_secs(15)).await;
    assert_eq!(
        emulator.calls().len(),
        before,
        "a service call while the rate limit lasts"
    );
    let api = h.api::<AutoscalingRunnerSet>(h.ns());
    let conditions = api
        .get("arc")
        .await?
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert!(
        conditions.iter().all(|c| c.status != "False"),
        "a rate limit is not the user's to fix: {conditions:?}"
    );
    emulator.clear_faults();
    testbed::eventually(
        "the scale set registered after the limit lifted",
        std::time::Duration::from_secs(300),
        || async {
            let ars = api.get("arc").await?;
            Ok(ars
                .annotations()
                .contains_key(annotations::RUNNER_SCALE_SET_ID)
                .then_some(()))
        },
    )
    .await?;
    assert!(h.running(), "the controllers never stopped");
    Ok(())
}
