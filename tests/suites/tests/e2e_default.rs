//! End-to-end, default setup (ARC's `default-setup`): both charts rendered with real Helm and
//! applied; the manager binary runs under the controller chart's ServiceAccount and RBAC, the
//! listener under the Role the manager gives it, runners as simulated runners on simulated
//! Nodes; jobs queued in the emulator run and the scale set scales 0 → N → 0. Then the leak
//! check.

use std::time::Duration;

use system::{ScaleSetSpec, System, SystemOptions};

#[tokio::test]
async fn default_setup_runs_jobs_and_scales_back_to_zero() {
    let sys = System::shared(SystemOptions::new("e2e-def"))
        .await
        .expect("system");
    let outcome = async {
        let set = sys
            .install_scale_set(ScaleSetSpec::new("arc-default"))
            .await?;
        let jobs = sys.run_jobs(&set, 3, Duration::from_secs(2), 0).await?;
        sys.uninstall_scale_set(&set).await?;
        sys.leak_check(&set, &jobs).await
    }
    .await;
    if let Err(e) = sys.finish(outcome).await {
        panic!("{e:#}");
    }
}
