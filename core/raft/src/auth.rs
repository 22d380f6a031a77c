//! Who a [`CairnNode`] handle acts for, the checks every client call goes through, tokens,
//! and etcd's Auth service on the node.
//!
//! The handle the server builds acts for the server itself ([`Access::Server`]) and is never
//! checked. Adapters derive a handle per client call with [`cairn_api::Auth::for_caller`];
//! while auth is enabled each of its calls is checked against the caller's permissions
//! (etcd's rules: reads need READ on the whole range, writes WRITE, `prev_kv` also READ, txns
//! everything their compares and ops touch, admin calls the root role). The check happens on
//! the member that receives the call, against the auth state it has applied.
//!
//! Tokens are etcd's "simple" tokens in spirit (opaque, with a TTL renewed by use) but any
//! member can check them without asking the others: a token names the user and when it was
//! issued, signed (HMAC-SHA-256) with a key the cluster chose when auth was enabled and with
//! the user's password hash. Disabling auth, deleting the user or changing their password
//! therefore invalidates it everywhere at once. The TTL is renewed in the memory of the
//! member that sees the token used; a token unused for the TTL is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use cairn_api::{
    AuthChange, AuthStatusResponse, AuthenticateResponse, Credentials, DeleteRangeRequest, NamesResponse,
    PermType, PutRequest, RequestOp, ResponseHeader, RoleGetResponse, StoreError, StoreResult, TxnRequest,
    UserGetResponse,
};
use cairn_mvcc::auth::{AuthCommand, AuthState};
use cairn_mvcc::{ApplyOutcome, WriteCommand};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::node::{now_ms, CairnNode};

/// Who a handle acts for.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// The server itself: never checked.
    Server,
    /// A client, by user name if it presented valid credentials.
    Client(Option<Arc<str>>),
}

/// What this member remembers of tokens and passwords, to spare work; nothing here is needed
/// for correctness.
#[derive(Default)]
pub(crate) struct Tokens {
    /// When each token was last used here (ms since the epoch): its TTL runs from then.
    last_used: Mutex<HashMap<String, i64>>,
    /// Recently verified passwords: user -> (SHA-256 of the password, the bcrypt hash it
    /// matched, until when). A v2 or RESP client sends its password with every request or
    /// connection; bcrypt costs tens of milliseconds by design.
    verified: Mutex<HashMap<String, Verified>>,
}

/// SHA-256 of a password, the bcrypt hash it matched, and until when that is remembered.
type Verified = ([u8; 32], String, Instant);

/// How long a verified password is remembered.
const VERIFIED_FOR: Duration = Duration::from_secs(60);
/// Tokens remembered before old ones are forgotten.
const MAX_REMEMBERED_TOKENS: usize = 100_000;

type HmacSha256 = Hmac<Sha256>;

fn sign(state: &AuthState, user: &str, issued_ms: i64) -> Option<String> {
    let hash = state.users.get(user)?.password_hash.clone().unwrap_or_default();
    let mut mac = HmacSha256::new_from_slice(&state.token_key).ok()?;
    for part in [user.as_bytes(), &issued_ms.to_be_bytes(), hash.as_bytes()] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    let tag = mac.finalize().into_bytes();
    Some(tag[..16].iter().map(|b| format!("{b:02x}")).collect())
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

impl Tokens {
    fn issue(&self, state: &AuthState, user: &str) -> StoreResult<String> {
        let issued = now_ms();
        let tag = sign(state, user, issued).ok_or(StoreError::AuthFailed)?;
        Ok(format!("{}.{issued}.{tag}", b64().encode(user)))
    }

    /// The user `token` was issued to, if it is genuine, current and not idle past `ttl`.
    fn check(&self, state: &AuthState, token: &str, ttl: Duration) -> Option<String> {
        let mut parts = token.splitn(3, '.');
        let user = String::from_utf8(b64().decode(parts.next()?).ok()?).ok()?;
        let issued: i64 = parts.next()?.parse().ok()?;
        let tag = parts.next()?;
        let expected = sign(state, &user, issued)?;
        // Constant-time enough: both are fixed-length hex, compared in full.
        if expected.len() != tag.len() || expected.bytes().zip(tag.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return None;
        }
        let now = now_ms();
        let ttl = ttl.as_millis() as i64;
        let mut seen = self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        let last = seen.get(token).copied().unwrap_or(issued).max(issued);
        if now - last > ttl {
            seen.remove(token);
            return None;
        }
        if seen.len() >= MAX_REMEMBERED_TOKENS {
            seen.retain(|_, used| now - *used <= ttl);
        }
        seen.insert(token.to_string(), now);
        Some(user)
    }
}

impl CairnNode {
    fn auth_state(&self) -> Arc<AuthState> {
        self.inner.auth.get()
    }

    /// The user the client is, when auth is enabled and this handle acts for a client:
    /// `Ok(None)` means "not checked" (the server's handle, or auth disabled).
    fn client_user(&self) -> StoreResult<Option<(Arc<AuthState>, Arc<str>)>> {
        let crate::auth::Access::Client(user) = &self.access else { return Ok(None) };
        let state = self.auth_state();
        if !state.enabled {
            return Ok(None);
        }
        match user {
            Some(u) => Ok(Some((state, u.clone()))),
            None => Err(StoreError::UserEmpty),
        }
    }

    /// While auth is enabled and this handle acts for a client: waits until every change
    /// committed before the call (auth changes included) is applied here, so a permission
    /// revoked a moment ago on another member is not honoured by this one. Free otherwise.
    pub(crate) async fn auth_barrier(&self) -> StoreResult<()> {
        if matches!(self.access, Access::Client(_)) && self.auth_state().enabled {
            self.read_barrier().await?;
        }
        Ok(())
    }

    /// The auth revision to bind a client's write to: read before its permissions are checked,
    /// so the check saw this revision or a later one. `None`: no binding needed (the server's
    /// handle, or auth disabled).
    pub(crate) fn auth_revision(&self) -> Option<u64> {
        let state = self.auth_state();
        (matches!(self.access, Access::Client(_)) && state.enabled).then_some(state.revision)
    }

    /// `cmd`, bound to auth revision `at` (see [`WriteCommand::Checked`]).
    pub(crate) fn checked(at: Option<u64>, cmd: WriteCommand) -> WriteCommand {
        match at {
            Some(auth_revision) => WriteCommand::Checked { auth_revision, command: Box::new(cmd) },
            None => cmd,
        }
    }

    /// Requires `need` on `[key, range_end)`.
    pub(crate) fn allow(&self, key: &[u8], range_end: &[u8], need: PermType) -> StoreResult<()> {
        match self.client_user()? {
            Some((state, user)) => state.check(&user, key, range_end, need),
            None => Ok(()),
        }
    }

    /// Requires a known client (any user) while auth is enabled.
    pub(crate) fn allow_authenticated(&self) -> StoreResult<()> {
        match self.client_user()? {
            Some((state, user)) if !state.users.contains_key(&*user) => Err(StoreError::PermissionDenied),
            _ => Ok(()),
        }
    }

    /// Requires the root role while auth is enabled.
    pub(crate) fn allow_admin(&self) -> StoreResult<()> {
        match self.client_user()? {
            Some((state, user)) if !state.is_admin(&user) => Err(StoreError::PermissionDenied),
            _ => Ok(()),
        }
    }

    pub(crate) fn allow_put(&self, req: &PutRequest) -> StoreResult<()> {
        self.allow(&req.key, &[], PermType::Write)?;
        if req.prev_kv {
            self.allow(&req.key, &[], PermType::Read)?;
        }
        Ok(())
    }

    pub(crate) fn allow_delete(&self, req: &DeleteRangeRequest) -> StoreResult<()> {
        self.allow(&req.key, &req.range_end, PermType::Write)?;
        if req.prev_kv {
            self.allow(&req.key, &req.range_end, PermType::Read)?;
        }
        Ok(())
    }

    /// Everything a txn's compares read and its ops (in both branches) touch.
    pub(crate) fn allow_txn(&self, req: &TxnRequest) -> StoreResult<()> {
        if self.client_user()?.is_none() {
            return Ok(());
        }
        for c in &req.compare {
            self.allow(&c.key, &c.range_end, PermType::Read)?;
        }
        for op in req.success.iter().chain(&req.failure) {
            match op {
                RequestOp::Range(r) => self.allow(&r.key, &r.range_end, PermType::Read)?,
                RequestOp::Put(p) => self.allow_put(p)?,
                RequestOp::DeleteRange(d) => self.allow_delete(d)?,
                RequestOp::Txn(t) => self.allow_txn(t)?,
            }
        }
        Ok(())
    }

    /// Requires WRITE on every key lease `id` holds (etcd's rule for attaching a key to a
    /// lease and for revoking it).
    pub(crate) async fn allow_lease_keys(&self, id: i64) -> StoreResult<()> {
        let Some((state, user)) = self.client_user()? else { return Ok(()) };
        if state.is_admin(&user) || id == 0 {
            return Ok(());
        }
        let keys = self.read(move |r| r.lease_keys(id)).await?;
        keys.iter().try_for_each(|k| state.check(&user, k, &[], PermType::Write))
    }

    fn with_access(&self, access: Access) -> Self {
        CairnNode { inner: self.inner.clone(), access }
    }

    /// Checks `password` against `user`'s stored hash (bcrypt, off the async threads).
    async fn verify_password(&self, name: &str, password: &str) -> StoreResult<()> {
        let state = self.auth_state();
        let Some(hash) = state.users.get(name).and_then(|u| u.password_hash.clone()) else {
            tracing::warn!(user = name, "authentication failed: no such user, or a user without a password");
            return Err(StoreError::AuthFailed);
        };
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        {
            let verified = self.inner.tokens.verified.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((d, h, until)) = verified.get(name) {
                if *d == digest && *h == hash && Instant::now() < *until {
                    return Ok(());
                }
            }
        }
        let (pw, h) = (password.to_string(), hash.clone());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pw, &h).unwrap_or(false))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        if !ok {
            tracing::warn!(user = name, "authentication failed: wrong password");
            return Err(StoreError::AuthFailed);
        }
        let mut verified = self.inner.tokens.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() > 10_000 {
            verified.clear();
        }
        verified.insert(name.to_string(), (digest, hash, Instant::now() + VERIFIED_FOR));
        Ok(())
    }

    async fn hash_password(&self, password: String) -> StoreResult<String> {
        let cost = self.inner.config.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(|e| StoreError::Internal(format!("hashing a password: {e}")))
    }

    async fn propose_auth(&self, cmd: WriteCommand) -> StoreResult<ResponseHeader> {
        match self.propose(cmd).await? {
            ApplyOutcome::Auth(h) => Ok(self.stamp(h)),
            other => Err(StoreError::Internal(format!("unexpected outcome {other:?}"))),
        }
    }

    async fn current_header(&self) -> StoreResult<ResponseHeader> {
        let meta = self.read(|r| r.meta()).await?;
        Ok(self.header(meta.revision))
    }
}

impl cairn_api::Auth for CairnNode {
    async fn for_caller(&self, credentials: Credentials) -> StoreResult<Self> {
        let state = self.auth_state();
        if !state.enabled {
            // Credentials are not looked at while auth is off (as etcd), except that a name
            // and a password must match for the adapters that show who is logged in.
            return match credentials {
                Credentials::Password { name, password } => {
                    self.verify_password(&name, &password).await?;
                    Ok(self.with_access(Access::Client(Some(name.into()))))
                }
                _ => Ok(self.with_access(Access::Client(None))),
            };
        }
        let user = match credentials {
            Credentials::None => None,
            Credentials::Token(token) => match self.inner.tokens.check(&state, &token, self.inner.config.auth_token_ttl) {
                Some(user) => Some(user),
                None => {
                    tracing::warn!("refused an invalid or expired auth token");
                    return Err(StoreError::InvalidAuthToken);
                }
            },
            Credentials::Password { name, password } => {
                self.verify_password(&name, &password).await?;
                Some(name)
            }
            Credentials::CertificateName(name) => Some(name),
        };
        Ok(self.with_access(Access::Client(user.map(Arc::from))))
    }

    fn caller_name(&self) -> Option<String> {
        match &self.access {
            Access::Client(Some(u)) => Some(u.to_string()),
            _ => None,
        }
    }

    fn auth_enabled(&self) -> bool {
        self.auth_state().enabled
    }

    fn check_access(&self, key: &[u8], range_end: &[u8], need: PermType) -> StoreResult<()> {
        self.allow(key, range_end, need)
    }

    async fn auth_status(&self) -> StoreResult<AuthStatusResponse> {
        let state = self.auth_state();
        Ok(AuthStatusResponse { header: self.current_header().await?, enabled: state.enabled, auth_revision: state.revision })
    }

    async fn authenticate(&self, name: String, password: String) -> StoreResult<AuthenticateResponse> {
        if !self.auth_state().enabled {
            return Err(StoreError::AuthNotEnabled);
        }
        self.verify_password(&name, &password).await?;
        let token = self.inner.tokens.issue(&self.auth_state(), &name)?;
        Ok(AuthenticateResponse { header: self.current_header().await?, token })
    }

    async fn auth_change(&self, change: AuthChange) -> StoreResult<ResponseHeader> {
        self.auth_barrier().await?;
        let at = self.auth_revision();
        self.allow_admin()?;
        let cmd = match change {
            AuthChange::Enable => {
                let key: [u8; 32] = rand::random();
                AuthCommand::Enable { token_key: key.to_vec() }
            }
            AuthChange::Disable => AuthCommand::Disable,
            AuthChange::UserAdd { name, password, no_password } => {
                if name.is_empty() {
                    return Err(StoreError::UserEmpty);
                }
                let password_hash = if no_password { None } else { Some(self.hash_password(password).await?) };
                AuthCommand::UserAdd { name, password_hash }
            }
            AuthChange::UserDelete { name } => AuthCommand::UserDelete { name },
            AuthChange::UserChangePassword { name, password } => {
                if !self.auth_state().users.contains_key(&name) {
                    return Err(StoreError::UserNotFound);
                }
                AuthCommand::UserChangePassword { name, password_hash: Some(self.hash_password(password).await?) }
            }
            AuthChange::UserGrantRole { user, role } => AuthCommand::UserGrantRole { user, role },
            AuthChange::UserRevokeRole { user, role } => AuthCommand::UserRevokeRole { user, role },
            AuthChange::RoleAdd { name } => AuthCommand::RoleAdd { name },
            AuthChange::RoleDelete { name } => AuthCommand::RoleDelete { name },
            AuthChange::RoleGrantPermission { name, perm } => AuthCommand::RoleGrantPermission { name, perm },
            AuthChange::RoleRevokePermission { role, key, range_end } => {
                AuthCommand::RoleRevokePermission { role, key, range_end }
            }
        };
        self.propose_auth(Self::checked(at, WriteCommand::Auth(cmd))).await
    }

    async fn user_get(&self, name: String) -> StoreResult<UserGetResponse> {
        // A user may look at itself; anyone else needs root.
        if self.caller_name().as_deref() != Some(name.as_str()) {
            self.allow_admin()?;
        }
        self.read_barrier().await?;
        let state = self.auth_state();
        let user = state.users.get(&name).ok_or(StoreError::UserNotFound)?;
        Ok(UserGetResponse { header: self.current_header().await?, roles: user.roles.clone() })
    }

    async fn user_list(&self) -> StoreResult<NamesResponse> {
        self.allow_admin()?;
        self.read_barrier().await?;
        let names = self.auth_state().users.keys().cloned().collect();
        Ok(NamesResponse { header: self.current_header().await?, names })
    }

    async fn role_get(&self, name: String) -> StoreResult<RoleGetResponse> {
        // A user may look at the roles it holds; anyone else needs root.
        let holds = self.caller_name().is_some_and(|u| {
            self.auth_state().users.get(&u).is_some_and(|u| u.roles.contains(&name))
        });
        if !holds {
            self.allow_admin()?;
        }
        self.read_barrier().await?;
        let state = self.auth_state();
        // As etcd 3.4, the root role lists what it was granted (nothing, usually), though it
        // may do everything.
        let perms = state.roles.get(&name).ok_or(StoreError::RoleNotFound)?.clone();
        Ok(RoleGetResponse { header: self.current_header().await?, perms })
    }

    async fn role_list(&self) -> StoreResult<NamesResponse> {
        self.allow_admin()?;
        self.read_barrier().await?;
        let names = self.auth_state().roles.keys().cloned().collect();
        Ok(NamesResponse { header: self.current_header().await?, names })
    }
}
