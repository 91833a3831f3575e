#![allow(clippy::unwrap_used)]
use super::*;

fn pem() -> String {
    actions_emulator::AzureCertificate::generate("arc-test")
        .unwrap()
        .pem
}

fn decode_segment(token: &str, i: usize) -> Value {
    let seg = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(seg).unwrap()).unwrap()
}

#[test]
fn the_assertion_has_the_documented_header_and_claims() {
    let generated = actions_emulator::AzureCertificate::generate("arc-test").unwrap();
    let cert = ClientCertificate::from_pem(&generated.pem, "/cert.pem").unwrap();
    assert_eq!(cert.x5t(), generated.x5t(), "x5t is the SHA-1 thumbprint");
    let aud = "https://login.example/tenant-1/oauth2/v2.0/token";
    let token = cert.assertion("client-1", aud, 1_700_000_000).unwrap();
    let header = decode_segment(token.expose_secret(), 0);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["x5t"], generated.x5t());
    assert_eq!(header["x5t#S256"], cert.x5t_s256());
    let claims = decode_segment(token.expose_secret(), 1);
    assert_eq!(claims["aud"], aud);
    assert_eq!(claims["iss"], "client-1");
    assert_eq!(claims["sub"], "client-1");
    assert_eq!(claims["nbf"], 1_700_000_000);
    assert_eq!(claims["exp"], 1_700_000_000 + ASSERTION_LIFETIME_SECS);
    let jti = claims["jti"].as_str().unwrap();
    assert_eq!(jti.len(), 36, "{jti}");
    let again = cert.assertion("client-1", aud, 1_700_000_000).unwrap();
    assert_ne!(
        decode_segment(again.expose_secret(), 1)["jti"],
        claims["jti"],
        "jti is unique"
    );
    assert!(!format!("{cert:?}").contains("PRIVATE"));
}

#[test]
fn bad_certificate_files_name_the_field_the_path_and_the_fix() {
    let err = ClientCertificate::from_file("/nonexistent/cert.pem")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("azureKeyVault.certificatePath")
            && err.contains("/nonexistent/cert.pem")
            && err.contains("mount"),
        "{err}"
    );
    let full = pem();
    let key_only = &full[full.find("-----BEGIN PRIVATE KEY").unwrap()..];
    let err = ClientCertificate::from_pem(key_only, "/k.pem")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no CERTIFICATE block"), "{err}");
    let cert_only = &full[..full.find("-----BEGIN PRIVATE KEY").unwrap()];
    let err = ClientCertificate::from_pem(cert_only, "/c.pem")
        .unwrap_err()
        .to_string();
    assert!(err.contains("no PRIVATE KEY block"), "{err}");
    let encrypted = format!(
        "{cert_only}-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
    );
    let err = ClientCertificate::from_pem(&encrypted, "/e.pem")
        .unwrap_err()
        .to_string();
    assert!(err.contains("encrypted"), "{err}");
    let garbage =
        format!("{cert_only}-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n");
    let err = ClientCertificate::from_pem(&garbage, "/g.pem")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not an RSA key") && !err.contains("c2VjcmV0"),
        "{err}"
    );
}

#[test]
fn missing_settings_are_named() {
    let dir = std::env::temp_dir().join(format!("kv-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cert.pem");
    std::fs::write(&path, pem()).unwrap();
    let ok = KeyVaultConfig {
        url: "https://v.vault.azure.net/".into(),
        tenant_id: "t".into(),
        client_id: "c".into(),
        certificate_path: path.to_string_lossy().into_owned(),
        authority_host: Some("https://login.example/".into()),
        ..KeyVaultConfig::default()
    };
    let vault = KeyVault::new(ok.clone()).unwrap();
    assert_eq!(
        vault.token_url(),
        "https://login.example/t/oauth2/v2.0/token"
    );
    for (field, change) in [
        (
            "azureKeyVault.tenantId",
            (|c: &mut KeyVaultConfig| c.tenant_id.clear()) as fn(&mut KeyVaultConfig),
        ),
        ("azureKeyVault.clientId", |c| c.client_id.clear()),
        ("azureKeyVault.url", |c| c.url.clear()),
        ("azureKeyVault.url", |c| c.url = "not a url".into()),
        ("azureKeyVault.certificatePath", |c| {
            c.certificate_path.clear()
        }),
        ("azureKeyVault.certificatePath", |c| {
            c.certificate_path = "/nope.pem".into()
        }),
    ] {
        let mut config = ok.clone();
        change(&mut config);
        let err = KeyVault::new(config).unwrap_err();
        assert!(
            matches!(&err, Error::Config { field: f, .. } if *f == field),
            "{field}: {err}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn credentials_json_as_arc_reads_it() {
    let s = |v: &str| SecretString::from(v.to_owned());
    assert!(matches!(
        github_credentials("kv", &s(r#"{"github_token":"ghp_x"}"#)),
        Ok(VaultCredentials::Pat(_))
    ));
    let app = github_credentials(
        "kv",
        &s(r#"{"github_app_id":"12","github_app_installation_id":34,"github_app_private_key":"KEY"}"#),
    )
    .unwrap();
    assert!(matches!(
        app,
        VaultCredentials::App {
            installation_id: 34,
            ..
        }
    ));
    assert!(!format!("{app:?}").contains("KEY"));
    let err = github_credentials("kv", &s(r#"{"github_app_id":"12"}"#))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("kv") && err.contains("no credentials"),
        "{err}"
    );
    let err = github_credentials("kv", &s(r#"{"github_token":"t","github_app_id":"1","github_app_installation_id":2,"github_app_private_key":"k"}"#))
        .unwrap_err()
        .to_string();
    assert!(err.contains("both"), "{err}");
    let err = github_credentials("kv", &s("ghp_plainSecretValue"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a JSON object") && !err.contains("ghp_plainSecretValue"),
        "{err}"
    );
    let err = github_credentials("kv", &s(r#"{"github_app_installation_id":"x"}"#))
        .unwrap_err()
        .to_string();
    assert!(err.contains("github_app_installation_id"), "{err}");
    let (user, password) =
        proxy_credentials("p", &s(r#"{"username":"u","password":"pw"}"#)).unwrap();
    assert_eq!((user.as_str(), password.expose_secret()), ("u", "pw"));
    assert!(proxy_credentials("p", &s("{}")).is_err());
}

#[test]
fn pem_blocks_are_split() {
    let blocks = pem_blocks(
        "x\n-----BEGIN A-----\n1\n-----END A-----\n-----BEGIN B C-----\n2\n-----END B C-----\n",
    );
    let labels: Vec<&str> = blocks.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["A", "B C"]);
}
