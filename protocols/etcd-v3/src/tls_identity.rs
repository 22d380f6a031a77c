//! Who is on the other end of a TLS client connection.
//!
//! When a client URL is `https://` and `--client-cert-auth` is on, every connection presents a
//! certificate that the listener verified against `--trusted-ca-file` during the handshake. The
//! listener (`gateway/src/listen.rs`) then puts the certificate's Subject Common Name as a
//! [`ClientCertCn`] into the `http::Request` extensions of every request on that connection:
//! gRPC calls (read it with `request.extensions().get::<ClientCertCn>()` on the
//! `tonic::Request`, which keeps the HTTP extensions) and HTTP requests (the JSON gateway and
//! the v2 API: `http::Request::extensions`, or axum's `Extension<ClientCertCn>` extractor).
//!
//! It is absent on plaintext connections, on TLS connections without a client certificate, and
//! when the verified certificate has no CN. As in etcd, the CN is meant to stand for the user
//! name when authentication is enabled (a request without a token is then that user's); this
//! module only carries it, deciding what it permits is the auth layer's job.
//!
//! RESP connections get the same CN as `Session::cert_user` (protocols/resp).

/// The Subject Common Name of the client certificate verified on this request's connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientCertCn(pub String);
