//! Authentication and authorization with etcd v3's model: users hold roles, roles hold
//! permissions (READ, WRITE or READWRITE on a key or a key range), the `root` user with the
//! `root` role may do everything, and nothing is checked until auth is enabled.
//!
//! Adapters never check permissions themselves. They turn what the client presented (a token,
//! a user name and password, a verified TLS client certificate's common name) into
//! [`Credentials`] and ask the store for a handle acting for that caller
//! ([`Auth::for_caller`]); every call on that handle is then checked by the core, the same
//! way for every protocol.

use serde::{Deserialize, Serialize};

use crate::ResponseHeader;

/// What a permission allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PermType {
    Read,
    Write,
    ReadWrite,
}

impl PermType {
    /// Whether a permission of this type allows an access of type `need` (Read or Write).
    pub fn allows(self, need: PermType) -> bool {
        self == PermType::ReadWrite || self == need
    }
}

/// A permission on `[key, range_end)`; an empty `range_end` means `key` alone and `[0]` means
/// every key from `key` on (etcd's encoding).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyPermission {
    pub perm: PermType,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

/// What a client presented to say who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing: refused (etcd's "user name is empty") once auth is enabled.
    None,
    /// A token from [`Auth::authenticate`].
    Token(String),
    /// A user name and password (etcd v2's basic auth, Redis's AUTH).
    Password { name: String, password: String },
    /// The common name of a client certificate the TLS layer verified (`--client-cert-auth`).
    CertificateName(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthStatusResponse {
    pub header: ResponseHeader,
    pub enabled: bool,
    /// Counts changes of users, roles, permissions and the enabled flag.
    pub auth_revision: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticateResponse {
    pub header: ResponseHeader,
    pub token: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserGetResponse {
    pub header: ResponseHeader,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamesResponse {
    pub header: ResponseHeader,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGetResponse {
    pub header: ResponseHeader,
    pub perms: Vec<KeyPermission>,
}

/// A change to users, roles or the enabled flag (etcd's Auth service calls that write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthChange {
    Enable,
    Disable,
    /// `password` is ignored when `no_password` (the user then authenticates only by TLS
    /// client certificate).
    UserAdd { name: String, password: String, no_password: bool },
    UserDelete { name: String },
    UserChangePassword { name: String, password: String },
    UserGrantRole { user: String, role: String },
    UserRevokeRole { user: String, role: String },
    RoleAdd { name: String },
    RoleDelete { name: String },
    RoleGrantPermission { name: String, perm: KeyPermission },
    RoleRevokePermission { role: String, key: Vec<u8>, range_end: Vec<u8> },
}
