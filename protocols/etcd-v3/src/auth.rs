//! etcd's Auth service (enable/disable, authenticate, users and roles), and how a gRPC call
//! says who its client is: the `token` metadata etcd's clients send after `Authenticate`,
//! else the common name of a verified TLS client certificate ([`crate::ClientCertCn`], with
//! `--client-cert-auth`), else nobody.

use cairn_api::{AuthChange, Credentials, KeyPermission, PermType};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::convert::header;
use crate::errors::to_status;
use crate::pb::authpb::{permission, Permission};
use crate::pb::etcdserverpb::auth_server::Auth;
use crate::pb::etcdserverpb::*;

/// The gRPC metadata key etcd's clients put their token in.
pub const TOKEN_METADATA_KEY: &str = "token";

/// What the client of a call presented, by etcd's precedence: a token first, then a verified
/// client certificate's common name.
pub fn credentials(metadata: &MetadataMap, extensions: &http::Extensions) -> Credentials {
    if let Some(token) = metadata.get(TOKEN_METADATA_KEY).and_then(|v| v.to_str().ok()) {
        return Credentials::Token(token.to_string());
    }
    match extensions.get::<crate::ClientCertCn>() {
        Some(cn) => Credentials::CertificateName(cn.0.clone()),
        None => Credentials::None,
    }
}

/// The handle acting for the client of `request`; refused (etcd's "invalid auth token") when
/// its token is not valid.
pub async fn caller<S: cairn_api::Auth, T>(store: &S, request: &Request<T>) -> Result<S, Status> {
    store.for_caller(credentials(request.metadata(), request.extensions())).await.map_err(to_status)
}

pub struct AuthService<S> {
    store: S,
}

impl<S> AuthService<S> {
    pub fn new(store: S) -> Self {
        AuthService { store }
    }
}

/// etcd's permission type as the core's.
pub fn perm_type(p: i32) -> Result<PermType, Status> {
    match permission::Type::try_from(p) {
        Ok(permission::Type::Read) => Ok(PermType::Read),
        Ok(permission::Type::Write) => Ok(PermType::Write),
        Ok(permission::Type::Readwrite) => Ok(PermType::ReadWrite),
        Err(_) => Err(Status::invalid_argument(format!("etcdserver: invalid permission type {p}"))),
    }
}

/// The core's permission as etcd's message.
pub fn permission(p: KeyPermission) -> Permission {
    let perm_type = match p.perm {
        PermType::Read => permission::Type::Read,
        PermType::Write => permission::Type::Write,
        PermType::ReadWrite => permission::Type::Readwrite,
    };
    Permission { perm_type: perm_type as i32, key: p.key, range_end: p.range_end }
}

impl<S: cairn_api::Auth> AuthService<S> {
    async fn change<T>(&self, request: &Request<T>, change: AuthChange) -> Result<Option<ResponseHeader>, Status> {
        let store = caller(&self.store, request).await?;
        Ok(header(store.auth_change(change).await.map_err(to_status)?))
    }
}

#[tonic::async_trait]
impl<S: cairn_api::Auth> Auth for AuthService<S> {
    async fn auth_enable(&self, request: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        let header = self.change(&request, AuthChange::Enable).await?;
        tracing::info!("authentication enabled");
        Ok(Response::new(AuthEnableResponse { header }))
    }

    async fn auth_disable(&self, request: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        let header = self.change(&request, AuthChange::Disable).await?;
        tracing::info!("authentication disabled");
        Ok(Response::new(AuthDisableResponse { header }))
    }

    async fn auth_status(&self, request: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        let store = caller(&self.store, &request).await?;
        let s = store.auth_status().await.map_err(to_status)?;
        Ok(Response::new(AuthStatusResponse { header: header(s.header), enabled: s.enabled, auth_revision: s.auth_revision }))
    }

    async fn authenticate(&self, request: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        let r = request.into_inner();
        let resp = self.store.authenticate(r.name, r.password).await.map_err(to_status)?;
        Ok(Response::new(AuthenticateResponse { header: header(resp.header), token: resp.token }))
    }

    async fn user_add(&self, request: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        let r = request.get_ref();
        if !r.hashed_password.is_empty() {
            return Err(Status::invalid_argument("etcdserver: hashed_password is not supported; send the password"));
        }
        let change = AuthChange::UserAdd {
            name: r.name.clone(),
            password: r.password.clone(),
            no_password: r.options.as_ref().is_some_and(|o| o.no_password),
        };
        Ok(Response::new(AuthUserAddResponse { header: self.change(&request, change).await? }))
    }

    async fn user_get(&self, request: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        let store = caller(&self.store, &request).await?;
        let resp = store.user_get(request.into_inner().name).await.map_err(to_status)?;
        Ok(Response::new(AuthUserGetResponse { header: header(resp.header), roles: resp.roles }))
    }

    async fn user_list(&self, request: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        let store = caller(&self.store, &request).await?;
        let resp = store.user_list().await.map_err(to_status)?;
        Ok(Response::new(AuthUserListResponse { header: header(resp.header), users: resp.names }))
    }

    async fn user_delete(&self, request: Request<AuthUserDeleteRequest>) -> Result<Response<AuthUserDeleteResponse>, Status> {
        let change = AuthChange::UserDelete { name: request.get_ref().name.clone() };
        Ok(Response::new(AuthUserDeleteResponse { header: self.change(&request, change).await? }))
    }

    async fn user_change_password(
        &self,
        request: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        let r = request.get_ref();
        if !r.hashed_password.is_empty() {
            return Err(Status::invalid_argument("etcdserver: hashed_password is not supported; send the password"));
        }
        let change = AuthChange::UserChangePassword { name: r.name.clone(), password: r.password.clone() };
        Ok(Response::new(AuthUserChangePasswordResponse { header: self.change(&request, change).await? }))
    }

    async fn user_grant_role(
        &self,
        request: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        let r = request.get_ref();
        let change = AuthChange::UserGrantRole { user: r.user.clone(), role: r.role.clone() };
        Ok(Response::new(AuthUserGrantRoleResponse { header: self.change(&request, change).await? }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        let r = request.get_ref();
        let change = AuthChange::UserRevokeRole { user: r.name.clone(), role: r.role.clone() };
        Ok(Response::new(AuthUserRevokeRoleResponse { header: self.change(&request, change).await? }))
    }

    async fn role_add(&self, request: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        let change = AuthChange::RoleAdd { name: request.get_ref().name.clone() };
        Ok(Response::new(AuthRoleAddResponse { header: self.change(&request, change).await? }))
    }

    async fn role_get(&self, request: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        let store = caller(&self.store, &request).await?;
        let resp = store.role_get(request.into_inner().role).await.map_err(to_status)?;
        Ok(Response::new(AuthRoleGetResponse {
            header: header(resp.header),
            perm: resp.perms.into_iter().map(permission).collect(),
        }))
    }

    async fn role_list(&self, request: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        let store = caller(&self.store, &request).await?;
        let resp = store.role_list().await.map_err(to_status)?;
        Ok(Response::new(AuthRoleListResponse { header: header(resp.header), roles: resp.names }))
    }

    async fn role_delete(&self, request: Request<AuthRoleDeleteRequest>) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        let change = AuthChange::RoleDelete { name: request.get_ref().role.clone() };
        Ok(Response::new(AuthRoleDeleteResponse { header: self.change(&request, change).await? }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        let r = request.get_ref();
        let Some(p) = r.perm.clone() else {
            return Err(to_status(cairn_api::StoreError::PermissionNotGiven));
        };
        let perm = KeyPermission { perm: perm_type(p.perm_type)?, key: p.key, range_end: p.range_end };
        let change = AuthChange::RoleGrantPermission { name: r.name.clone(), perm };
        Ok(Response::new(AuthRoleGrantPermissionResponse { header: self.change(&request, change).await? }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        let r = request.get_ref();
        let change = AuthChange::RoleRevokePermission { role: r.role.clone(), key: r.key.clone(), range_end: r.range_end.clone() };
        Ok(Response::new(AuthRoleRevokePermissionResponse { header: self.change(&request, change).await? }))
    }
}
