//! Certificates and keys of a local control plane, made with rcgen.

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The cluster's certificate authority, the API server's serving certificate and the
/// ServiceAccount token signing key.
pub(crate) struct Pki {
    ca_params: CertificateParams,
    ca_key_pem: String,
    /// The CA certificate (PEM), trusted for serving and client certificates.
    pub(crate) ca_cert_pem: String,
    /// The API server's serving certificate (PEM).
    pub(crate) serving_cert_pem: String,
    /// The API server's serving key (PKCS#8 PEM).
    pub(crate) serving_key_pem: String,
    /// The ServiceAccount token signing key (ECDSA P-256, PKCS#8 PEM).
    pub(crate) service_account_key_pem: String,
    /// The public half of the ServiceAccount token signing key (PEM).
    pub(crate) service_account_pub_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

/// A client certificate and its key, both PEM.
pub(crate) struct ClientCert {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

impl Pki {
    /// Generates a fresh CA, a serving certificate for 127.0.0.1 and the in-cluster names, and a
    /// ServiceAccount signing key.
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        ca_params.distinguished_name = name("arc-rs testbed CA", None);
        let ca_key = KeyPair::generate().context("generating the testbed CA key")?;
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .context("self-signing the testbed CA")?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca_params.clone(), ca_key);

        let mut serving = CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "10.0.0.1".to_owned(),
            "localhost".to_owned(),
            "kubernetes".to_owned(),
            "kubernetes.default".to_owned(),
            "kubernetes.default.svc".to_owned(),
            "kubernetes.default.svc.cluster.local".to_owned(),
        ])?;
        serving.distinguished_name = name("kube-apiserver", None);
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_key = KeyPair::generate().context("generating the API server key")?;
        let serving_cert = serving
            .signed_by(&serving_key, &issuer)
            .context("signing the API server certificate")?;

        let service_account_key =
            KeyPair::generate().context("generating the ServiceAccount signing key")?;

        Ok(Self {
            ca_params,
            ca_key_pem,
            ca_cert_pem: ca_cert.pem(),
            serving_cert_pem: serving_cert.pem(),
            serving_key_pem: serving_key.serialize_pem(),
            service_account_key_pem: service_account_key.serialize_pem(),
            service_account_pub_pem: service_account_key.public_key_pem(),
        })
    }

    /// Signs a client certificate for `user`, optionally in `group`; the API server authenticates
    /// it as that user (common name) in that group (organization).
    pub(crate) fn client_cert(
        &self,
        user: &str,
        group: Option<&str>,
    ) -> anyhow::Result<ClientCert> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem).context("reading the testbed CA key")?;
        let issuer = Issuer::new(self.ca_params.clone(), ca_key);
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(user, group);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().with_context(|| format!("generating a key for {user}"))?;
        let cert = params
            .signed_by(&key, &issuer)
            .with_context(|| format!("signing a client certificate for {user}"))?;
        Ok(ClientCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        dn.push(DnType::OrganizationName, org);
    }
    dn
}
