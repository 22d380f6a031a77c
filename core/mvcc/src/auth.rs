//! Users, roles and permissions: etcd v3's auth rules, applied deterministically like every
//! other replicated change, and the permission check every client call goes through.
//!
//! The whole auth state is one small record in the `meta` column family (users and roles are
//! few and change rarely): it travels in snapshots with the rest of the state, and each
//! member keeps a decoded copy in memory ([`AuthCache`]) so checking a request costs no read.
//! Password hashes are computed by the member that proposes the change (bcrypt salts are
//! random), so applying stays deterministic.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use cairn_api::{KeyPermission, PermType, StoreError};
use serde::{Deserialize, Serialize};

/// The user and the role that may do everything.
pub const ROOT: &str = "root";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// bcrypt hash; `None` for a user created with no password (TLS client certificates only).
    pub password_hash: Option<String>,
    /// Sorted, without duplicates.
    pub roles: Vec<String>,
}

/// Everything auth knows, as replicated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    pub enabled: bool,
    /// +1 for every change (etcd's auth revision).
    pub revision: u64,
    pub users: BTreeMap<String, User>,
    /// Each role's permissions, sorted by key.
    pub roles: BTreeMap<String, Vec<KeyPermission>>,
    /// Signs tokens; chosen anew (by the proposer) each time auth is enabled, so disabling
    /// auth invalidates every token issued before.
    pub token_key: Vec<u8>,
}

/// A change to the auth state, as replicated through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthCommand {
    Enable { token_key: Vec<u8> },
    Disable,
    UserAdd { name: String, password_hash: Option<String> },
    UserDelete { name: String },
    UserChangePassword { name: String, password_hash: Option<String> },
    UserGrantRole { user: String, role: String },
    UserRevokeRole { user: String, role: String },
    RoleAdd { name: String },
    RoleDelete { name: String },
    RoleGrantPermission { name: String, perm: KeyPermission },
    RoleRevokePermission { role: String, key: Vec<u8>, range_end: Vec<u8> },
}

/// The auth state a member serves from, replaced whole after each change.
#[derive(Debug, Default)]
pub struct AuthCache(RwLock<Arc<AuthState>>);

impl AuthCache {
    pub fn new(state: AuthState) -> Self {
        AuthCache(RwLock::new(Arc::new(state)))
    }

    pub fn get(&self) -> Arc<AuthState> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, state: Arc<AuthState>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = state;
    }
}

/// `[start, end)` with `None` for "no end".
type Span = (Vec<u8>, Option<Vec<u8>>);

/// The keys `key`/`range_end` stand for, in etcd's encoding.
fn span(key: &[u8], range_end: &[u8]) -> Span {
    let single = || {
        let mut end = key.to_vec();
        end.push(0);
        (key.to_vec(), Some(end))
    };
    match range_end {
        [] => single(),
        [0] => (key.to_vec(), None),
        end if end <= key => single(),
        end => (key.to_vec(), Some(end.to_vec())),
    }
}

impl AuthState {
    /// Whether `user` holds the root role.
    pub fn is_admin(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == ROOT))
    }

    /// Whether `user` may access every key of `[key, range_end)` for `need` (Read or Write):
    /// the union of the matching permissions of all its roles must cover the range.
    pub fn check(&self, user: &str, key: &[u8], range_end: &[u8], need: PermType) -> Result<(), StoreError> {
        let Some(u) = self.users.get(user) else {
            return Err(StoreError::PermissionDenied);
        };
        if u.roles.iter().any(|r| r == ROOT) {
            return Ok(());
        }
        let mut granted: Vec<Span> = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flatten()
            .filter(|p| p.perm.allows(need))
            .map(|p| span(&p.key, &p.range_end))
            .filter(|(s, e)| e.as_ref().is_none_or(|e| e > s))
            .collect();
        granted.sort();
        let (mut covered_to, want_end) = span(key, range_end);
        for (start, end) in granted {
            if start > covered_to {
                break;
            }
            match end {
                None => return Ok(()),
                Some(end) if end > covered_to => covered_to = end,
                Some(_) => {}
            }
            if want_end.as_ref().is_some_and(|w| covered_to >= *w) {
                return Ok(());
            }
        }
        Err(StoreError::PermissionDenied)
    }

    /// The state after `cmd`, or `None` when `cmd` changes nothing (etcd answers success
    /// without a new auth revision then), or etcd's error.
    pub fn apply(&self, cmd: &AuthCommand) -> Result<Option<AuthState>, StoreError> {
        use AuthCommand::*;
        let mut next = self.clone();
        match cmd {
            Enable { token_key } => {
                if self.enabled {
                    return Ok(None);
                }
                let root = self.users.get(ROOT).ok_or(StoreError::RootUserNotExist)?;
                if !root.roles.iter().any(|r| r == ROOT) {
                    return Err(StoreError::RootRoleNotExist);
                }
                next.enabled = true;
                next.token_key = token_key.clone();
            }
            Disable => {
                if !self.enabled {
                    return Ok(None);
                }
                next.enabled = false;
            }
            UserAdd { name, password_hash } => {
                if name.is_empty() {
                    return Err(StoreError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(StoreError::UserAlreadyExists);
                }
                next.users.insert(name.clone(), User { password_hash: password_hash.clone(), roles: Vec::new() });
            }
            UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(StoreError::InvalidAuthMgmt);
                }
                next.users.remove(name).ok_or(StoreError::UserNotFound)?;
            }
            UserChangePassword { name, password_hash } => {
                let user = next.users.get_mut(name).ok_or(StoreError::UserNotFound)?;
                user.password_hash = password_hash.clone();
            }
            UserGrantRole { user, role } => {
                let u = next.users.get_mut(user).ok_or(StoreError::UserNotFound)?;
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(StoreError::RoleNotFound);
                }
                match u.roles.binary_search(role) {
                    Ok(_) => return Ok(None),
                    Err(at) => u.roles.insert(at, role.clone()),
                }
            }
            UserRevokeRole { user, role } => {
                if self.enabled && user == ROOT && role == ROOT {
                    return Err(StoreError::InvalidAuthMgmt);
                }
                let u = next.users.get_mut(user).ok_or(StoreError::UserNotFound)?;
                let at = u.roles.binary_search(role).map_err(|_| StoreError::RoleNotGranted)?;
                u.roles.remove(at);
            }
            RoleAdd { name } => {
                if name.is_empty() {
                    return Err(StoreError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(StoreError::RoleAlreadyExists);
                }
                next.roles.insert(name.clone(), Vec::new());
            }
            RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(StoreError::InvalidAuthMgmt);
                }
                next.roles.remove(name).ok_or(StoreError::RoleNotFound)?;
                for u in next.users.values_mut() {
                    u.roles.retain(|r| r != name);
                }
            }
            RoleGrantPermission { name, perm } => {
                let perms = next.roles.get_mut(name).ok_or(StoreError::RoleNotFound)?;
                match perms.iter_mut().find(|p| p.key == perm.key && p.range_end == perm.range_end) {
                    Some(p) => p.perm = perm.perm,
                    None => {
                        perms.push(perm.clone());
                        perms.sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
                    }
                }
            }
            RoleRevokePermission { role, key, range_end } => {
                let perms = next.roles.get_mut(role).ok_or(StoreError::RoleNotFound)?;
                let at = perms
                    .iter()
                    .position(|p| p.key == *key && p.range_end == *range_end)
                    .ok_or(StoreError::PermissionNotGranted)?;
                perms.remove(at);
            }
        }
        next.revision += 1;
        Ok(Some(next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(perm: PermType, key: &str, end: &[u8]) -> KeyPermission {
        KeyPermission { perm, key: key.as_bytes().to_vec(), range_end: end.to_vec() }
    }

    fn state() -> AuthState {
        let mut s = AuthState::default();
        for cmd in [
            AuthCommand::UserAdd { name: "root".into(), password_hash: None },
            AuthCommand::UserGrantRole { user: "root".into(), role: "root".into() },
            AuthCommand::UserAdd { name: "alice".into(), password_hash: None },
            AuthCommand::RoleAdd { name: "r".into() },
            AuthCommand::RoleGrantPermission { name: "r".into(), perm: perm(PermType::Read, "a", b"c") },
            AuthCommand::RoleGrantPermission { name: "r".into(), perm: perm(PermType::ReadWrite, "c", b"e") },
            AuthCommand::RoleGrantPermission { name: "r".into(), perm: perm(PermType::Write, "x", b"") },
            AuthCommand::UserGrantRole { user: "alice".into(), role: "r".into() },
        ] {
            s = s.apply(&cmd).unwrap().unwrap();
        }
        s
    }

    #[test]
    fn ranges_are_covered_by_the_union_of_permissions() {
        let s = state();
        let read = |k: &str, e: &[u8]| s.check("alice", k.as_bytes(), e, PermType::Read);
        assert_eq!(read("b", b""), Ok(()));
        assert_eq!(read("a", b"e"), Ok(()), "two adjacent permissions cover a range together");
        assert_eq!(read("a", b"e\0"), Err(StoreError::PermissionDenied));
        assert_eq!(read("a", &[0]), Err(StoreError::PermissionDenied));
        assert_eq!(read("x", b""), Err(StoreError::PermissionDenied), "write-only key");
        let write = |k: &str, e: &[u8]| s.check("alice", k.as_bytes(), e, PermType::Write);
        assert_eq!(write("x", b""), Ok(()));
        assert_eq!(write("xy", b""), Err(StoreError::PermissionDenied));
        assert_eq!(write("b", b""), Err(StoreError::PermissionDenied));
        assert_eq!(write("d", b""), Ok(()));
        assert_eq!(s.check("root", b"", &[0], PermType::Write), Ok(()));
        assert_eq!(s.check("nobody", b"a", b"", PermType::Read), Err(StoreError::PermissionDenied));
    }

    #[test]
    fn root_rules_and_revisions_follow_etcd() {
        let empty = AuthState::default();
        assert_eq!(empty.apply(&AuthCommand::Enable { token_key: vec![1] }), Err(StoreError::RootUserNotExist));
        let s = empty.apply(&AuthCommand::UserAdd { name: "root".into(), password_hash: None }).unwrap().unwrap();
        assert_eq!(s.apply(&AuthCommand::Enable { token_key: vec![1] }), Err(StoreError::RootRoleNotExist));
        let s = state();
        let on = s.apply(&AuthCommand::Enable { token_key: vec![1] }).unwrap().unwrap();
        assert_eq!(on.revision, s.revision + 1);
        assert_eq!(on.apply(&AuthCommand::Enable { token_key: vec![2] }), Ok(None));
        assert_eq!(on.apply(&AuthCommand::UserDelete { name: "root".into() }), Err(StoreError::InvalidAuthMgmt));
        assert_eq!(
            on.apply(&AuthCommand::UserRevokeRole { user: "root".into(), role: "root".into() }),
            Err(StoreError::InvalidAuthMgmt)
        );
        assert_eq!(on.apply(&AuthCommand::UserAdd { name: "alice".into(), password_hash: None }), Err(StoreError::UserAlreadyExists));
        assert_eq!(on.apply(&AuthCommand::UserAdd { name: "".into(), password_hash: None }), Err(StoreError::UserEmpty));
        assert_eq!(
            on.apply(&AuthCommand::UserGrantRole { user: "alice".into(), role: "nope".into() }),
            Err(StoreError::RoleNotFound)
        );
        assert_eq!(
            on.apply(&AuthCommand::UserRevokeRole { user: "alice".into(), role: "nope".into() }),
            Err(StoreError::RoleNotGranted)
        );
        assert_eq!(
            on.apply(&AuthCommand::RoleRevokePermission { role: "r".into(), key: b"zz".to_vec(), range_end: vec![] }),
            Err(StoreError::PermissionNotGranted)
        );
        let gone = on.apply(&AuthCommand::RoleDelete { name: "r".into() }).unwrap().unwrap();
        assert!(gone.users["alice"].roles.is_empty(), "deleting a role takes it from its users");
    }
}
