//! Who a TLS client is: the listener puts the common name of a verified client certificate
//! (with `--client-cert-auth`) into each request's extensions, for auth to use as the user.

/// The Subject common name of the client certificate the TLS layer verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertCn(pub String);
