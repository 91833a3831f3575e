//! A generated PKI for HTTPS: root CA, intermediate CA, and a leaf for 127.0.0.1 and localhost.

use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The certificates an HTTPS emulator serves and the CAs clients can trust.
pub struct TlsMaterial {
    /// Root CA certificate (PEM): trust this to reach the emulator.
    pub ca_pem: String,
    /// Intermediate CA certificate (PEM); trusting only this also works (docs/architecture.md#tls).
    pub intermediate_pem: String,
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

fn ca_params(cn: &str) -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    Ok(p)
}

impl TlsMaterial {
    /// Generates a fresh PKI and a rustls acceptor (HTTP/2 and HTTP/1.1 via ALPN).
    pub fn generate() -> anyhow::Result<Self> {
        let root_params = ca_params("actions-emulator root CA")?;
        let root_key = KeyPair::generate().context("generating the emulator root CA key")?;
        let root_cert = root_params
            .self_signed(&root_key)
            .context("self-signing the emulator root CA")?;
        let root = Issuer::new(root_params, root_key);

        let inter_params = ca_params("actions-emulator intermediate CA")?;
        let inter_key = KeyPair::generate().context("generating the intermediate CA key")?;
        let inter_cert = inter_params
            .signed_by(&inter_key, &root)
            .context("signing the intermediate CA")?;
        let inter = Issuer::new(inter_params, inter_key);

        let mut leaf =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "actions-emulator");
        leaf.distinguished_name = dn;
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().context("generating the serving key")?;
        let leaf_cert = leaf
            .signed_by(&leaf_key, &inter)
            .context("signing the serving certificate")?;

        let chain: Vec<CertificateDer<'static>> =
            vec![leaf_cert.der().clone(), inter_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("loading the serving certificate")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: root_cert.pem(),
            intermediate_pem: inter_cert.pem(),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}
