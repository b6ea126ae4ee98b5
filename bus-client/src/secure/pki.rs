//! The cluster's own certificate authority: one CA key signs every server, client and
//! dashboard certificate, and every party trusts only that CA.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;

/// How long generated certificates are valid: ten years for the CA, two for the others
/// (rotate with `idunno secure rotate`).
const CA_DAYS: i64 = 3650;
const LEAF_DAYS: i64 = 730;

/// A PEM certificate and its PEM private key.
#[derive(Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem").field("key", &"<redacted>").finish()
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A NATS server: serves clients and routes, and dials routes (server and client auth).
    Server,
    /// A client identity (client auth).
    Client,
    /// A dashboard (server auth).
    Https,
}

/// A CA that can issue certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, which every party trusts.
    pub cert: String,
}

fn params(common_name: &str, days: i64) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "IDunno");
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(days);
    Ok(p)
}

fn ca_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut p = params(&format!("IDunno CA {name}"), CA_DAYS)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

impl Ca {
    /// A new CA named after the cluster; returns it and its private key (PEM).
    pub fn generate(name: &str) -> Result<(Ca, String), rcgen::Error> {
        let key = KeyPair::generate()?;
        let params = ca_params(name)?;
        let cert = params.self_signed(&key)?.pem();
        let key_pem = key.serialize_pem();
        let issuer = Issuer::new(params, key);
        Ok((Ca { issuer, cert }, key_pem))
    }

    /// The CA of cluster `name` from its certificate and private key, to issue more
    /// certificates: the same name and key sign as the original did.
    pub fn load(name: &str, cert: String, key_pem: &str) -> Result<Ca, rcgen::Error> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::new(ca_params(name)?, key);
        Ok(Ca { issuer, cert })
    }

    /// A certificate for `common_name`, valid for the host names and addresses `sans`.
    pub fn issue(
        &self,
        common_name: &str,
        sans: &[String],
        usage: Usage,
    ) -> Result<Pem, rcgen::Error> {
        let mut p = params(common_name, LEAF_DAYS)?;
        p.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = match usage {
            Usage::Server => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Https => vec![ExtendedKeyUsagePurpose::ServerAuth],
        };
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}
