//! TLS for the listeners (rustls with the ring provider): the server configurations of the
//! client, RESP, metrics and peer listeners, and the Subject CN of a verified client
//! certificate.
//!
//! As in etcd, a trusted CA file makes the listener require a client certificate signed by it
//! (`--trusted-ca-file` alone does, like `--client-cert-auth`); without one, any client may
//! connect and only the server is authenticated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN for the client listeners: gRPC (HTTP/2) and curl's HTTP/1.1 on one port.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN for the peer listeners: gRPC only.
pub const ALPN_H2: &[&[u8]] = &[b"h2"];

/// One side's certificate flags (`--cert-file`, ... or `--peer-cert-file`, ...).
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub trusted_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
}

impl TlsFiles {
    /// Whether a certificate and key are configured (what an https:// URL needs).
    pub fn has_identity(&self) -> bool {
        self.cert_file.is_some() && self.key_file.is_some()
    }

    /// Whether connecting clients must present a certificate signed by the trusted CA.
    pub fn requires_client_cert(&self) -> bool {
        self.client_cert_auth || self.trusted_ca_file.is_some()
    }
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file at `path`.
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read certificate file {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot parse certificate file {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// The private key (PKCS#8, PKCS#1 or SEC1 PEM) at `path`.
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).with_context(|| format!("cannot read a PEM private key from {}", path.display()))
}

/// The roots of the trusted CA file.
pub fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).with_context(|| format!("{}: not a usable CA certificate", path.display()))?;
    }
    Ok(roots)
}

/// The server side of `files`, offering `alpn` (empty: no ALPN).
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> anyhow::Result<Arc<ServerConfig>> {
    let (Some(cert_file), Some(key_file)) = (&files.cert_file, &files.key_file) else {
        return Err(anyhow!("a TLS listener needs a certificate and a key"));
    };
    let certs = load_certs(cert_file)?;
    let key = load_key(key_file)?;
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let builder = match (&files.trusted_ca_file, files.requires_client_cert()) {
        (Some(ca), true) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                .build()
                .with_context(|| format!("cannot use {} to verify client certificates", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, true) => return Err(anyhow!("client certificate authentication needs a trusted CA file")),
        (_, false) => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .with_context(|| format!("{} and {} are not a usable certificate and key", cert_file.display(), key_file.display()))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The Subject Common Name of a DER certificate (the first CN when there are several).
///
/// A small DER walk over the certificate (RFC 5280: Certificate -> tbsCertificate -> subject
/// Name -> RDNs -> AttributeTypeAndValue with id-at-commonName) rather than a full X.509
/// parser: the certificate was verified by rustls (webpki) before this is called, and only the
/// one string is needed.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (cert, _) = der::expect(cert.as_ref(), der::SEQUENCE)?;
    let (mut tbs, _) = der::expect(cert, der::SEQUENCE)?;
    // version [0] EXPLICIT (optional), serialNumber, signature, issuer, validity, subject.
    if tbs.first() == Some(&0xa0) {
        tbs = der::next(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = der::next(tbs)?.2;
    }
    let (mut rdns, _) = der::expect(tbs, der::SEQUENCE)?;
    while !rdns.is_empty() {
        let (mut set, rest) = der::expect(rdns, der::SET)?;
        rdns = rest;
        while !set.is_empty() {
            let (attr, rest) = der::expect(set, der::SEQUENCE)?;
            set = rest;
            let (oid, value) = der::expect(attr, der::OID)?;
            if oid == der::COMMON_NAME {
                let (tag, text, _) = der::next(value)?;
                return der::string(tag, text);
            }
        }
    }
    None
}

/// Just enough DER for [`common_name`].
mod der {
    pub const SEQUENCE: u8 = 0x30;
    pub const SET: u8 = 0x31;
    pub const OID: u8 = 0x06;
    /// id-at-commonName, 2.5.4.3.
    pub const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

    /// The first element of `input`: its tag, its contents and what follows it.
    pub fn next(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }

    /// The first element of `input` if it has tag `tag`: its contents and what follows.
    pub fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (t, contents, rest) = next(input)?;
        (t == tag).then_some((contents, rest))
    }

    /// A directory string: UTF8String, PrintableString, IA5String, TeletexString (taken as
    /// Latin-1) or BMPString (UTF-16BE).
    pub fn string(tag: u8, bytes: &[u8]) -> Option<String> {
        match tag {
            0x0c | 0x13 | 0x16 => String::from_utf8(bytes.to_vec()).ok(),
            0x14 => Some(bytes.iter().map(|b| char::from(*b)).collect()),
            0x1e => {
                let units = bytes.chunks_exact(2);
                if !units.remainder().is_empty() {
                    return None;
                }
                String::from_utf16(&units.map(|c| u16::from_be_bytes([c[0], c[1]])).collect::<Vec<_>>()).ok()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair};

    fn cert_with(dn: &[(DnType, &str)]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in dn {
            params.distinguished_name.push(t.clone(), *v);
        }
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_subject_cn_is_found_among_other_attributes() {
        let cert = cert_with(&[(DnType::CountryName, "DE"), (DnType::OrganizationName, "Cairn"), (DnType::CommonName, "alice")]);
        assert_eq!(common_name(&cert).as_deref(), Some("alice"));
        let cert = cert_with(&[(DnType::CommonName, "bob the büilder")]);
        assert_eq!(common_name(&cert).as_deref(), Some("bob the büilder"));
    }

    #[test]
    fn no_cn_and_garbage_give_none() {
        assert_eq!(common_name(&cert_with(&[(DnType::OrganizationName, "Cairn")])), None);
        assert_eq!(common_name(&CertificateDer::from(vec![0x30, 0x82, 0xff])), None);
        assert_eq!(common_name(&CertificateDer::from(Vec::new())), None);
    }

    #[test]
    fn long_form_lengths_and_string_kinds() {
        assert_eq!(der::next(&[0x04, 0x81, 0x02, 1, 2, 9]), Some((0x04, &[1u8, 2][..], &[9u8][..])));
        assert_eq!(der::next(&[0x04, 0x05, 1]), None);
        assert_eq!(der::string(0x1e, &[0, b'h', 0, b'i']).as_deref(), Some("hi"));
        assert_eq!(der::string(0x14, &[0xe9]).as_deref(), Some("é"));
    }
}
