//! Credentials and the admin-token lifecycle.

use std::time::Duration;

use actions_client::{ActionsClient, Credentials, DEFAULT_RUNNER_GROUP_ID, Error};
use actions_emulator::{
    AppConfig, Endpoint, Fault, FaultKind, TEST_APP_CLIENT_ID, TEST_APP_ID,
    TEST_APP_INSTALLATION_ID, TEST_APP_PRIVATE_KEY_PEM,
};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::support::{self, assert_no_secrets, texts};

fn app_client(
    emu: &actions_emulator::Emulator,
    id: &str,
    installation: i64,
    pem: &str,
) -> ActionsClient {
    ActionsClient::builder(
        emu.org_url("octo-org"),
        Credentials::app(id, installation, &SecretString::from(pem.to_owned())).unwrap(),
    )
    .transport(support::transport(|_| {}))
    .build()
    .unwrap()
}

#[tokio::test]
async fn github_app_by_app_id_and_client_id_with_both_key_forms() {
    let generated =
        rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .unwrap();
    let generated_pem = generated.serialize_pem();
    assert!(
        generated_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8"
    );
    assert!(
        TEST_APP_PRIVATE_KEY_PEM.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "PKCS#1"
    );
    let emu = support::emulator(|c| {
        c.apps.push(AppConfig {
            app_id: 777,
            client_id: Some("Iv1.generated0001".into()),
            installation_id: 99,
            public_key_pem: generated.public_key_pem(),
        });
    })
    .await;
    let cases = [
        (
            TEST_APP_ID.to_string(),
            TEST_APP_INSTALLATION_ID,
            TEST_APP_PRIVATE_KEY_PEM.to_owned(),
        ),
        (
            TEST_APP_CLIENT_ID.to_owned(),
            TEST_APP_INSTALLATION_ID,
            TEST_APP_PRIVATE_KEY_PEM.to_owned(),
        ),
        (
            "777".to_owned(),
            99,
            format!("leading text\n{generated_pem}\n-----BEGIN CERTIFICATE-----\nignored\n"),
        ),
        ("Iv1.generated0001".to_owned(), 99, generated_pem.clone()),
    ];
    for (id, installation, pem) in &cases {
        emu.reset_counters();
        let client = app_client(&emu, id, *installation, pem);
        assert!(
            client
                .get_runner_scale_set(DEFAULT_RUNNER_GROUP_ID, "x")
                .await
                .unwrap()
                .is_none(),
            "app {id}"
        );
        assert_eq!(emu.count(Endpoint::InstallationToken), 1, "app {id}");
        assert_eq!(emu.count(Endpoint::RegistrationToken), 1, "app {id}");
        let calls = emu.calls();
        let install = calls
            .iter()
            .find(|c| c.endpoint == "installation_token")
            .unwrap();
        assert_eq!(
            install.uri,
            format!("/api/v3/app/installations/{installation}/access_tokens")
        );
        assert_eq!(
            install.content_type.as_deref(),
            Some("application/vnd.github+json")
        );
    }

    // The JWT itself: iat backdated 60 s, exp = iat + 9 min, issuer as configured.
    let app = actions_client::GitHubApp::new("777", 99, &SecretString::from(generated_pem.clone()))
        .unwrap();
    let jwt = app.jwt(1_767_225_480).unwrap();
    let claims = jwt.expose_secret().split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims,
        serde_json::json!({"iss":"777","iat":1_767_225_420,"exp":1_767_225_960})
    );

    // Wrong installation and wrong key are refused and reported without the key.
    let mut errors = Vec::new();
    let wrong_installation = app_client(&emu, "777", 12345, &generated_pem)
        .get_runner_scale_set(1, "x")
        .await
        .unwrap_err();
    assert!(
        wrong_installation.status().is_some_and(|s| s >= 400),
        "{wrong_installation}"
    );
    errors.extend(texts(&wrong_installation));
    let wrong_key = app_client(&emu, "777", 99, TEST_APP_PRIVATE_KEY_PEM)
        .get_runner_scale_set(1, "x")
        .await
        .unwrap_err();
    assert!(matches!(wrong_key, Error::AuthFailed(_)), "{wrong_key}");
    errors.extend(texts(&wrong_key));
    let bad_pem = Credentials::app(
        "777",
        99,
        &SecretString::from(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".to_owned(),
        ),
    )
    .unwrap_err();
    assert!(
        bad_pem.to_string().contains("github_app_private_key"),
        "{bad_pem}"
    );
    errors.extend(texts(&bad_pem));
    assert_no_secrets(
        &errors,
        &[
            generated_pem.lines().nth(1).unwrap(),
            TEST_APP_PRIVATE_KEY_PEM.lines().nth(1).unwrap(),
        ],
    );
}

#[tokio::test]
async fn a_bad_pat_fails_once_without_retries() {
    let emu = support::emulator(|_| {}).await;
    let client = ActionsClient::builder(
        emu.org_url("octo-org"),
        Credentials::pat(SecretString::from("ghp_wrongwrongwrong".to_owned())).unwrap(),
    )
    .transport(support::transport(|_| {}))
    .build()
    .unwrap();
    let err = client.get_runner_scale_set(1, "x").await.unwrap_err();
    assert!(matches!(err, Error::AuthFailed(_)), "{err}");
    assert_eq!(err.status(), Some(401));
    assert_eq!(
        emu.count(Endpoint::RegistrationToken),
        1,
        "401 is not retried"
    );
    assert_no_secrets(&texts(&err), &["ghp_wrongwrongwrong"]);
}

#[tokio::test]
async fn fifty_concurrent_callers_share_one_refresh() {
    // 30 s tokens are always inside the 60 s margin: every call needs a refresh.
    let emu = support::emulator(|c| c.admin_token_lifetime = Duration::from_secs(30)).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let calls = (0..50).map(|_| client.get_runner_scale_set_by_id(424_242));
    for result in futures::future::join_all(calls).await {
        assert!(result.unwrap().is_none());
    }
    assert_eq!(emu.count(Endpoint::RunnerRegistration), 1);
    assert_eq!(emu.count(Endpoint::RegistrationToken), 1);
    assert_eq!(emu.count(Endpoint::GetScaleSet), 50);
    // The token expires within the margin, so the next call refreshes before using it.
    client.get_runner_scale_set_by_id(424_242).await.unwrap();
    assert_eq!(emu.count(Endpoint::RunnerRegistration), 2);

    // Spawned tasks on the multi-threaded runtime: still one refresh per stale token.
    emu.reset_counters();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get_runner_scale_set_by_id(1).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_none());
    }
    let refreshes = emu.count(Endpoint::RunnerRegistration);
    assert!(
        (1..50).contains(&refreshes),
        "{refreshes} refreshes for 50 calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_token_is_fetched_once_for_fifty_tasks() {
    let emu = support::emulator(|_| {}).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.get_runner_scale_set(1, "none").await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_none());
    }
    assert_eq!(emu.count(Endpoint::RunnerRegistration), 1);
    assert_eq!(emu.count(Endpoint::ListScaleSets), 50);
}

#[tokio::test]
async fn runner_registration_retries_401_and_403_then_reports_the_last_answer() {
    let emu = support::emulator(|_| {}).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let status = |s| FaultKind::Status {
        status: s,
        retry_after: None,
        type_key: None,
        message: None,
    };
    emu.inject(Fault::on(Endpoint::RunnerRegistration, status(401), 2));
    emu.inject(Fault::on(Endpoint::RunnerRegistration, status(403), 2));
    client.get_runner_scale_set(1, "x").await.unwrap();
    assert_eq!(
        emu.count(Endpoint::RunnerRegistration),
        5,
        "4 refusals, then success"
    );

    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    emu.reset_counters();
    emu.inject(Fault::on(
        Endpoint::RunnerRegistration,
        FaultKind::Respond {
            status: 403,
            content_type: Some("application/json".into()),
            body: r#"{"message":"propagating","documentation_url":"x"}"#.into(),
        },
        10,
    ));
    let err = client.get_runner_scale_set(1, "x").await.unwrap_err();
    assert!(matches!(err, Error::AuthFailed(_)), "{err}");
    assert_eq!(err.status(), Some(403));
    assert_eq!(
        err.info().unwrap().message,
        "propagating",
        "the last body is kept"
    );
    assert_eq!(emu.count(Endpoint::RunnerRegistration), 5, "1 + 4 retries");
    emu.clear_faults();
}

#[tokio::test]
async fn admin_token_problems() {
    let emu = support::emulator(|_| {}).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    client.get_runner_scale_set(1, "x").await.unwrap();
    assert_eq!(emu.count(Endpoint::RunnerRegistration), 1);

    // Revoked on the service side: one reactive refresh, then success.
    emu.expire_admin_tokens();
    client.get_runner_scale_set(1, "x").await.unwrap();
    assert_eq!(emu.count(Endpoint::RunnerRegistration), 2);

    // S moves: the next refresh picks the new URL up.
    let new_s = emu.rotate_actions_url();
    // Until then the old S answers a bare 404, which is an error, not "no such scale set".
    let stale = client.get_runner_scale_set_by_id(1).await.unwrap_err();
    assert_eq!(stale.status(), Some(404), "{stale}");
    client.invalidate_admin_token();
    client.get_runner_scale_set(1, "x").await.unwrap();
    assert_eq!(client.service_url().unwrap(), new_s);
    let last = emu
        .calls()
        .into_iter()
        .rev()
        .find(|c| c.endpoint == "list_scale_sets")
        .unwrap();
    assert!(
        new_s.ends_with(&format!("{}/", last.uri.split("/_apis").next().unwrap())),
        "{} vs {new_s}",
        last.uri
    );

    // A failed refresh fails the call only; the next call refreshes again and succeeds.
    client.invalidate_admin_token();
    emu.inject(Fault::on(
        Endpoint::RegistrationToken,
        FaultKind::Status {
            status: 500,
            retry_after: None,
            type_key: None,
            message: None,
        },
        5,
    ));
    let err = client.get_runner_scale_set(1, "x").await.unwrap_err();
    assert!(matches!(err, Error::Server(_)), "{err}");
    client.get_runner_scale_set(1, "x").await.unwrap();

    // A token without `exp` (or not a JWT) is used, then refreshed before every call.
    emu.reset_counters();
    client.invalidate_admin_token();
    let unsigned = format!(
        "{}.{}.sig",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"sub":"no-exp"}"#)
    );
    for token in [unsigned.as_str(), "opaque-token"] {
        emu.reset_counters();
        client.invalidate_admin_token();
        emu.inject(Fault::on(
            Endpoint::RunnerRegistration,
            FaultKind::Respond {
                status: 201,
                content_type: Some("application/json".into()),
                body: serde_json::json!({"url": emu.snapshot().actions_url, "token": token})
                    .to_string(),
            },
            1,
        ));
        // The emulator rejects the unknown token with 401; the client refreshes once more and
        // gets a real one. Nothing crashes on the missing `exp`.
        client.get_runner_scale_set(1, "x").await.unwrap();
        assert_eq!(
            emu.count(Endpoint::RunnerRegistration),
            2,
            "token {token:?}"
        );
        assert_no_secrets(&[], &[token]);
    }
    // The real token is cached again.
    let after = emu.count(Endpoint::RunnerRegistration);
    client.get_runner_scale_set(1, "x").await.unwrap();
    assert_eq!(emu.count(Endpoint::RunnerRegistration), after);

    // Missing url or token in the runner-registration answer.
    for body in [r#"{"token":"x"}"#, r#"{"url":"http://x/"}"#, "not json"] {
        client.invalidate_admin_token();
        emu.inject(Fault::on(
            Endpoint::RunnerRegistration,
            FaultKind::Respond {
                status: 200,
                content_type: Some("application/json".into()),
                body: body.into(),
            },
            1,
        ));
        let err = client.get_runner_scale_set(1, "x").await.unwrap_err();
        assert!(matches!(err, Error::BadResponse(_)), "{err}");
    }
}

#[tokio::test]
async fn registration_token_is_exposed_for_embedders() {
    let emu = support::emulator(|_| {}).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    let token = client.registration_token().await.unwrap();
    assert!(!token.expose_secret().is_empty());
    assert!(!format!("{token:?}").contains(token.expose_secret()));
    assert_no_secrets(&[], &[token.expose_secret()]);
}

#[tokio::test]
async fn fifty_callers_hitting_a_revoked_token_share_one_refresh() {
    let emu = support::emulator(|_| {}).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    client.get_runner_scale_set_by_id(1).await.unwrap();
    emu.expire_admin_tokens();
    emu.reset_counters();
    let calls = (0..50).map(|_| client.get_runner_scale_set_by_id(1));
    for result in futures::future::join_all(calls).await {
        assert!(result.unwrap().is_none());
    }
    assert_eq!(emu.count(Endpoint::RunnerRegistration), 1);
    assert_eq!(
        emu.count(Endpoint::GetScaleSet),
        100,
        "50 refused, 50 retried"
    );
}

/// A 403 that is a rate limit (a `Retry-After`, or GitHub's secondary-rate-limit message) is
/// `RateLimited` with the wait, not a credential rejection.
#[tokio::test]
async fn a_rate_limited_403_is_not_an_authentication_failure() {
    let emu = support::emulator(|_| {}).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    client.get_runner_scale_set(1, "x").await.unwrap();
    emu.inject(Fault::on(
        Endpoint::ListScaleSets,
        FaultKind::Status {
            status: 403,
            retry_after: Some("7".into()),
            type_key: None,
            message: None,
        },
        1,
    ));
    let err = client.get_runner_scale_set(1, "x").await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d.as_secs() == 7),
        "{err}"
    );
    emu.inject(Fault::on(
        Endpoint::ListScaleSets,
        FaultKind::Respond {
            status: 403,
            content_type: Some("application/json".into()),
            body: r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#.into(),
        },
        1,
    ));
    let err = client.get_runner_scale_set(1, "x").await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::RateLimited {
                retry_after: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.to_string().contains("PAT"), "{err}");
    client.get_runner_scale_set(1, "x").await.unwrap();
}

/// Each of GitHub's rate-limit forms over HTTP (docs.github.com, "Rate limits for the REST
/// API"): a spent primary limit (403 or 429 with `x-ratelimit-reset`), a secondary limit and a
/// bare "rate limit exceeded" are `RateLimited`, never an authentication failure, and the client
/// makes no call of its own while the limit lasts (one request each); a `Retry-After` short
/// enough is waited out inside the call, which then succeeds.
#[tokio::test]
async fn every_rate_limit_form_is_a_wait_not_a_credential_failure() {
    let emu = support::emulator(|_| {}).await;
    let client = support::pat_client(&emu, &emu.org_url("octo-org"), support::transport(|_| {}));
    client.get_runner_scale_set(1, "x").await.unwrap();
    let pat = emu.pat();
    let five_minutes = Duration::from_secs(300);
    for (kind, named) in [
        (FaultKind::rate_limit_spent(403, five_minutes), true),
        (FaultKind::rate_limit_spent(429, five_minutes), true),
        (FaultKind::secondary_rate_limit(403), false),
        (FaultKind::secondary_rate_limit(429), false),
        (
            FaultKind::RateLimit {
                status: 403,
                reset_in_secs: None,
                secondary: false,
            },
            false,
        ),
    ] {
        emu.reset_counters();
        emu.inject(Fault::on(Endpoint::ListScaleSets, kind.clone(), 5));
        let err = client.get_runner_scale_set(1, "x").await.unwrap_err();
        let Error::RateLimited { retry_after, .. } = &err else {
            panic!("{kind:?} is not a rate limit: {err}");
        };
        assert_eq!(retry_after.is_some(), named, "{kind:?}: {err}");
        if let Some(wait) = retry_after {
            assert!(
                *wait > Duration::from_secs(200) && *wait <= five_minutes,
                "{wait:?}"
            );
        }
        assert_eq!(
            emu.count(Endpoint::ListScaleSets),
            1,
            "{kind:?}: called again"
        );
        assert!(!err.to_string().contains(pat.expose_secret()), "{err}");
        assert!(!err.to_string().contains("authentication"), "{err}");
        emu.clear_faults();
    }
    emu.reset_counters();
    emu.inject(Fault::on(
        Endpoint::ListScaleSets,
        FaultKind::retry_after(403, 1),
        1,
    ));
    client.get_runner_scale_set(1, "x").await.unwrap();
    assert_eq!(
        emu.count(Endpoint::ListScaleSets),
        2,
        "retried once, after the wait"
    );
}
