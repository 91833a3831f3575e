//! The Lease elector against the real kube-apiserver: one holder at a time, release hands over
//! at once, and a holder that stops renewing is replaced.

use std::time::Duration;

use manager::cli::LeaderElection;
use manager::leader::{Attempt, Elector};

fn settings(name: &str) -> LeaderElection {
    LeaderElection {
        lease_name: name.to_owned(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    }
}

#[tokio::test]
async fn one_holder_release_and_expiry() -> anyhow::Result<()> {
    let cp = testbed::ControlPlane::shared().await?;
    let ns = cp.test_namespace("lease").await?;
    let mut a = Elector::new(cp.client(), ns.name(), "a".into(), settings("arc"));
    let mut b = Elector::new(cp.client(), ns.name(), "b".into(), settings("arc"));

    assert_eq!(a.try_acquire_or_renew().await?, Attempt::Leading);
    assert_eq!(
        b.try_acquire_or_renew().await?,
        Attempt::Following { holder: "a".into() }
    );
    assert_eq!(a.try_acquire_or_renew().await?, Attempt::Leading, "renewal");

    a.release().await;
    assert_eq!(
        b.try_acquire_or_renew().await?,
        Attempt::Leading,
        "a released Lease is free"
    );
    assert_eq!(
        a.try_acquire_or_renew().await?,
        Attempt::Following { holder: "b".into() }
    );

    // b stops renewing: a keeps seeing b as the holder until the record has stayed unchanged
    // for a lease duration on a's clock, then takes over.
    let started = tokio::time::Instant::now();
    loop {
        match a.try_acquire_or_renew().await? {
            Attempt::Leading => break,
            Attempt::Following { holder } => assert_eq!(holder, "b"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "a never took over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        b.try_acquire_or_renew().await?,
        Attempt::Following { holder: "a".into() },
        "b notices it lost the Lease"
    );
    Ok(())
}
