//! Users and permissions: the engine's side of authentication (the
//! checks themselves are in `crate::auth`).

use std::net::IpAddr;

use super::{Engine, EngineInner};
use crate::auth::{self, Permission, Principal, UserInfo, UserRecord};
use crate::error::{Error, Result};
use crate::names::check_name;
use crate::store::Write;
use crate::store::records::TopicPermissionRecord;
use crate::topic_auth::{self, TopicPermission};

impl Engine {
    /// Checks a login; `peer` is the client's address (loopback-only users are
    /// refused from elsewhere).
    pub fn authenticate(
        &self,
        user: &str,
        password: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Principal> {
        self.inner.users.authenticate(user, password, peer)
    }

    /// [`Engine::authenticate`] without blocking: the password check runs on
    /// the engine's check threads while the task waits.
    pub async fn authenticate_async(
        &self,
        user: &str,
        password: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Principal> {
        self.inner
            .users
            .authenticate_async(user, password, peer)
            .await
    }

    /// A login by a verified client certificate: the user named by it, if it
    /// exists (and `peer` may use it: loopback-only users stay on loopback).
    pub fn authenticate_certificate(&self, user: &str, peer: Option<IpAddr>) -> Result<Principal> {
        self.inner.users.authenticate_certificate(user, peer)
    }

    /// A user's principal without a password check (anonymous logins mapped to a user).
    pub fn principal(&self, user: &str) -> Result<Principal> {
        self.inner.users.principal(user)
    }

    /// Creates or replaces a user (password hashed; permissions kept on replace).
    pub fn put_user(&self, name: &str, password: &str, tags: Vec<String>) -> Result<()> {
        check_name("user", name)?;
        let permissions = self
            .inner
            .users
            .get(name)
            .map(|u| u.permissions.clone())
            .unwrap_or_default();
        let rec = UserRecord {
            name: name.to_owned(),
            password_hash: auth::hash_password(password)?,
            tags,
            loopback_only: false,
            permissions,
        };
        self.inner.save_user(rec);
        Ok(())
    }

    /// Sets a user's topic permission on one exchange of a tenant (replacing
    /// the one it had there), as `rabbitmqctl set_topic_permissions`.
    pub fn set_topic_permission(&self, user: &str, permission: TopicPermission) -> Result<()> {
        topic_auth::validate(&permission)?;
        if self.inner.users.get(user).is_none() {
            return Err(Error::not_found("user", user));
        }
        self.tenant(&permission.tenant)?;
        let (tenant, exchange) = (permission.tenant.clone(), permission.exchange.clone());
        self.inner.store().submit(
            Write::TopicPermission(TopicPermissionRecord {
                user: user.to_owned(),
                permission: permission.clone(),
            }),
            true,
        );
        self.inner
            .users
            .put_topic(user, &tenant, &exchange, Some(permission));
        Ok(())
    }

    /// Removes a user's topic permissions on a tenant: on one exchange, or on
    /// all of them. Returns how many were removed.
    pub fn clear_topic_permissions(
        &self,
        user: &str,
        tenant: &str,
        exchange: Option<&str>,
    ) -> Result<usize> {
        if self.inner.users.get(user).is_none() {
            return Err(Error::not_found("user", user));
        }
        let gone: Vec<String> = self
            .topic_permissions()
            .into_iter()
            .filter(|(u, p)| u == user && p.tenant == tenant)
            .filter(|(_, p)| exchange.is_none_or(|x| x == p.exchange))
            .map(|(_, p)| p.exchange)
            .collect();
        for x in &gone {
            self.inner.store().submit(
                Write::ForgetTopicPermission {
                    user: user.to_owned(),
                    tenant: tenant.to_owned(),
                    exchange: x.clone(),
                },
                true,
            );
            self.inner.users.put_topic(user, tenant, x, None);
        }
        Ok(gone.len())
    }

    /// Every topic permission, as (user, permission).
    pub fn topic_permissions(&self) -> Vec<(String, TopicPermission)> {
        self.inner.users.topic_permissions()
    }

    /// Deletes a user.
    pub fn delete_user(&self, name: &str) -> Result<()> {
        let topic: Vec<TopicPermission> = self
            .topic_permissions()
            .into_iter()
            .filter(|(u, _)| u == name)
            .map(|(_, p)| p)
            .collect();
        for p in topic {
            self.inner.store().submit(
                Write::ForgetTopicPermission {
                    user: name.to_owned(),
                    tenant: p.tenant,
                    exchange: p.exchange,
                },
                true,
            );
        }
        if !self.inner.users.remove(name) {
            return Err(Error::not_found("user", name));
        }
        self.inner
            .services
            .store
            .submit(Write::ForgetUser(name.to_owned()), true);
        self.inner.forget_credentials_of(name);
        Ok(())
    }

    /// Sets a user's permission on a tenant (replacing the previous one).
    pub fn set_permission(&self, user: &str, permission: Permission) -> Result<()> {
        auth::validate_permission(&permission)?;
        let mut rec = (*self
            .inner
            .users
            .get(user)
            .ok_or_else(|| Error::not_found("user", user))?)
        .clone();
        rec.permissions.retain(|p| p.tenant != permission.tenant);
        rec.permissions.push(permission);
        self.inner.save_user(rec);
        Ok(())
    }

    /// Removes a user's permission on a tenant.
    pub fn clear_permission(&self, user: &str, tenant: &str) -> Result<()> {
        let mut rec = (*self
            .inner
            .users
            .get(user)
            .ok_or_else(|| Error::not_found("user", user))?)
        .clone();
        rec.permissions.retain(|p| p.tenant != tenant);
        self.inner.save_user(rec);
        Ok(())
    }

    /// Every user.
    pub fn users(&self) -> Vec<UserInfo> {
        self.inner.users.list()
    }
}

impl EngineInner {
    pub(super) fn save_user(&self, rec: UserRecord) {
        self.store().submit(Write::User(rec.clone()), true);
        self.users.put(rec);
    }
}
