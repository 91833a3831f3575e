//! End-to-end, default setup (ARC's `default-setup`): both charts rendered with real Helm and
//! applied; the manager binary runs under the controller chart's ServiceAccount and RBAC, the
//! listener under the Role the manager gives it, runners as simulated runners on simulated
//! Nodes; jobs queued in the emulator run and the scale set scales 0 → N → 0. Then the leak
//! check.

use std::time::Duration;

use system::{ScaleSetSpec, System, SystemOptions, WAIT};
use testbed::ControlPlane;

async fn system(name: &str, options: impl FnOnce(&mut SystemOptions)) -> System {
    let cp = ControlPlane::shared_with_scheduling()
        .await
        .expect("control plane");
    let mut o = SystemOptions::new(name);
    options(&mut o);
    System::start(cp.into(), o).await.expect("system")
}

#[tokio::test]
async fn default_setup_runs_jobs_and_scales_back_to_zero() {
    let sys = system("e2e-def", |_| {}).await;
    let outcome = async {
        let set = sys
            .install_scale_set(ScaleSetSpec::new("arc-default"))
            .await?;
        let jobs = sys.queue_jobs(&set, 3, Duration::from_secs(2));
        sys.wait_jobs_completed(&jobs, WAIT).await?;
        sys.wait_runners(&set, 0, WAIT).await?;
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    let diagnostics = if outcome.is_err() {
        sys.diagnostics().await
    } else {
        String::new()
    };
    sys.shutdown().await;
    if let Err(e) = outcome {
        panic!("{e:#}{diagnostics}");
    }
}
