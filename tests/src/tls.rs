//! A throwaway PKI for the TLS tests, made at run time with rcgen (no key material is ever
//! committed): a CA, a server/peer certificate for `127.0.0.1` and `localhost` (valid for
//! both server and client authentication, as etcd peers use one certificate for both), client
//! certificates, and a second, untrusted CA with certificates of its own.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl CertFiles {
    pub fn cert(&self) -> &str {
        self.cert.to_str().expect("utf-8 path")
    }
    pub fn key(&self) -> &str {
        self.key.to_str().expect("utf-8 path")
    }
}

/// One CA and what it signed.
pub struct Ca {
    pub cert: PathBuf,
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Ca {
    /// A new self-signed CA named `name`, its certificate in `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-signed CA");
        let path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&path, cert.pem()).expect("write CA");
        Ca { cert: path, cert_pem: cert.pem(), issuer: Issuer::new(params, key), dir: dir.to_path_buf() }
    }

    pub fn cert(&self) -> &str {
        self.cert.to_str().expect("utf-8 path")
    }

    /// A certificate with Subject CN `cn` and the given SANs, written as `<file>.pem` and
    /// `<file>-key.pem`.
    pub fn issue(&self, file: &str, cn: &str, sans: &[&str], usages: &[ExtendedKeyUsagePurpose]) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = usages.to_vec();
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}-key.pem")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&files.cert, &files.cert_pem).expect("write cert");
        std::fs::write(&files.key, &files.key_pem).expect("write key");
        files
    }

    /// A server certificate for 127.0.0.1 and localhost, also usable as a client certificate.
    pub fn server(&self, file: &str) -> CertFiles {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        self.issue(file, "cairn-server", &["127.0.0.1", "localhost"], &[ServerAuth, ClientAuth])
    }

    /// A client certificate whose CN is `user`.
    pub fn client(&self, file: &str, user: &str) -> CertFiles {
        self.issue(file, user, &[], &[ExtendedKeyUsagePurpose::ClientAuth])
    }
}

/// The PKI most TLS tests use, in `dir`: the trusted CA with a server certificate and a client
/// certificate for user `alice`, and an untrusted CA with a client certificate (`mallory`)
/// and a server certificate of its own.
pub struct Pki {
    pub ca: Ca,
    pub server: CertFiles,
    pub client: CertFiles,
    pub other_ca: Ca,
    pub other_client: CertFiles,
    pub other_server: CertFiles,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca = Ca::new(dir, "trusted");
        let other_ca = Ca::new(dir, "other");
        Pki {
            server: ca.server("server"),
            client: ca.client("client", "alice"),
            other_client: other_ca.client("other-client", "mallory"),
            other_server: other_ca.server("other-server"),
            ca,
            other_ca,
        }
    }
}
