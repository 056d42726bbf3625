//! Projects, access keys and tokens: the engine's side (the registries are
//! in `crate::identity`). Every change is written to the store like users are.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Engine, EngineInner};
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::identity::{
    self, AccessKeyInfo, AccessKeyRecord, MAX_ACCESS_KEYS, ProjectRecord, TokenInfo, TokenRecord,
};
use crate::message::now_millis;
use crate::store::Write;

/// A successful login ([`Engine::login_async`]).
#[derive(Clone, Debug)]
pub struct Login {
    /// Who logged in.
    pub principal: Principal,
    /// When a token login's token expires (ms since the epoch); `None` for
    /// a password, which was checked once and does not expire.
    pub expires_at: Option<u64>,
}

/// Longest description of an access key (Huawei IAM's limit).
const MAX_DESCRIPTION: usize = 255;

impl Engine {
    /// A signature of `data` for `purpose` under this node's key: what a
    /// door hands out (a DMS consumption handler) and must recognise
    /// unchanged later. It survives restarts (the node key is stored) and is
    /// [`crate::SIGNATURE_LEN`] bytes.
    pub fn sign(&self, purpose: &str, data: &[u8]) -> [u8; identity::SIGNATURE_LEN] {
        self.inner.node_key.sign(purpose, data)
    }

    /// Whether `signature` is [`Engine::sign`]'s for `data` (constant time).
    pub fn signature_matches(&self, purpose: &str, data: &[u8], signature: &[u8]) -> bool {
        self.inner
            .node_key
            .signature_matches(purpose, data, signature)
    }

    /// A tenant's project id.
    pub fn project_id(&self, tenant: &str) -> Option<String> {
        self.inner.projects.id_of(tenant)
    }

    /// The tenant a `{project_id}` names: a tenant's name, or a project id.
    /// A name wins over an id (a tenant may be named like an id).
    pub fn tenant_of_project(&self, name_or_id: &str) -> Option<String> {
        if self.inner.tenants.read().contains_key(name_or_id) {
            return Some(name_or_id.to_owned());
        }
        self.inner.projects.tenant_of(name_or_id)
    }

    /// Creates an access key for a user; returns it and its SK, which is
    /// never shown again.
    pub fn create_access_key(
        &self,
        user: &str,
        description: &str,
    ) -> Result<(AccessKeyInfo, String)> {
        if self.inner.users.get(user).is_none() {
            return Err(Error::not_found("user", user));
        }
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(Error::invalid(
                "description",
                format!("longer than {MAX_DESCRIPTION} characters"),
            ));
        }
        if self.inner.access_keys.of_user(user).len() >= MAX_ACCESS_KEYS {
            return Err(Error::LimitReached(format!(
                "user '{user}' has {MAX_ACCESS_KEYS} access keys, the most a user may have"
            )));
        }
        let (access, secret) = identity::new_pair();
        let rec = AccessKeyRecord {
            sealed_secret: self.inner.node_key.seal(secret.as_bytes(), &access),
            access,
            user: user.to_owned(),
            active: true,
            description: description.to_owned(),
            created_at: now_millis(),
        };
        let info = AccessKeyInfo::from(&rec);
        self.inner
            .store()
            .submit(Write::AccessKey(rec.clone()), true);
        self.inner
            .access_keys
            .put(rec, Arc::from(secret.as_bytes()));
        Ok((info, secret))
    }

    /// One access key (without its SK).
    pub fn access_key(&self, access: &str) -> Option<AccessKeyInfo> {
        self.inner
            .access_keys
            .get(access)
            .as_ref()
            .map(AccessKeyInfo::from)
    }

    /// A user's access keys, or everyone's.
    pub fn access_keys(&self, user: Option<&str>) -> Vec<AccessKeyInfo> {
        let recs = match user {
            Some(u) => self.inner.access_keys.of_user(u),
            None => self.inner.access_keys.all(),
        };
        recs.iter().map(AccessKeyInfo::from).collect()
    }

    /// Activates or deactivates an access key and/or changes its description.
    pub fn update_access_key(
        &self,
        access: &str,
        active: Option<bool>,
        description: Option<&str>,
    ) -> Result<AccessKeyInfo> {
        let (mut rec, secret) = self
            .inner
            .access_keys
            .secret(access)
            .ok_or_else(|| Error::not_found("access key", access))?;
        if let Some(d) = description {
            if d.chars().count() > MAX_DESCRIPTION {
                return Err(Error::invalid(
                    "description",
                    format!("longer than {MAX_DESCRIPTION} characters"),
                ));
            }
            d.clone_into(&mut rec.description);
        }
        if let Some(a) = active {
            rec.active = a;
        }
        self.inner
            .store()
            .submit(Write::AccessKey(rec.clone()), true);
        let info = AccessKeyInfo::from(&rec);
        self.inner.access_keys.put(rec, secret);
        Ok(info)
    }

    /// Deletes an access key.
    pub fn delete_access_key(&self, access: &str) -> Result<()> {
        self.inner
            .access_keys
            .remove(access)
            .ok_or_else(|| Error::not_found("access key", access))?;
        self.inner
            .store()
            .submit(Write::ForgetAccessKey(access.to_owned()), true);
        Ok(())
    }

    /// The principal an access key acts for and its SK, to verify a request
    /// signature with. Unknown and inactive keys fail, each saying so.
    pub fn access_key_secret(
        &self,
        access: &str,
        peer: Option<IpAddr>,
    ) -> Result<(Principal, Arc<[u8]>)> {
        let (rec, secret) =
            self.inner.access_keys.secret(access).ok_or_else(|| {
                Error::AuthenticationFailed(format!("unknown access key '{access}'"))
            })?;
        if !rec.active {
            return Err(Error::AuthenticationFailed(format!(
                "access key '{access}' is inactive"
            )));
        }
        let principal = self.inner.users.principal_from(&rec.user, peer)?;
        Ok((principal, secret))
    }

    /// Issues a token for an authenticated user, scoped to a tenant it may
    /// use, living `ttl_ms`. Returns the token (shown once) and what it says.
    pub fn issue_token(
        &self,
        user: &Principal,
        tenant: &str,
        method: &str,
        ttl_ms: u64,
    ) -> Result<(String, TokenInfo)> {
        if !self.inner.tenants.read().contains_key(tenant) || !user.may_use_tenant(tenant) {
            return Err(Error::AccessRefused(format!(
                "user '{}' has no permission on project '{tenant}'",
                user.user()
            )));
        }
        let token = identity::new_token();
        let now = now_millis();
        let rec = TokenRecord {
            digest: identity::token_digest(&token),
            user: user.user().to_owned(),
            tenant: tenant.to_owned(),
            method: method.to_owned(),
            issued_at: now,
            expires_at: now.saturating_add(ttl_ms),
        };
        let info = TokenInfo::from(&rec);
        self.inner.store().submit(Write::Token(rec.clone()), true);
        for gone in self.inner.tokens.put(rec, now) {
            self.inner.store().submit(Write::ForgetToken(gone), false);
        }
        Ok((token, info))
    }

    /// Checks a token: the principal of its user, limited to the token's
    /// tenant, and what the token says.
    /// An unknown, revoked or expired token fails, saying which.
    pub fn validate_token(
        &self,
        token: &str,
        peer: Option<IpAddr>,
    ) -> Result<(Principal, TokenInfo)> {
        let digest = identity::token_digest(token);
        let rec = self
            .inner
            .tokens
            .get(&digest)
            .ok_or_else(|| Error::AuthenticationFailed("unknown or revoked token".into()))?;
        if rec.expires_at <= now_millis() {
            self.inner.tokens.remove(&digest);
            self.inner.store().submit(Write::ForgetToken(digest), false);
            return Err(Error::AuthenticationFailed("the token has expired".into()));
        }
        let principal = self
            .inner
            .users
            .principal_from(&rec.user, peer)?
            .scoped_to(&rec.tenant);
        Ok((principal, TokenInfo::from(&rec)))
    }

    /// A token presented as the password of a login (AMQP, RabbitMQ's OAuth 2
    /// way): valid, and the user's own (an empty user name stands for the
    /// token's user). Returns the principal, limited to the token's tenant.
    pub fn token_login(
        &self,
        user: &str,
        token: &str,
        peer: Option<IpAddr>,
    ) -> Result<(Principal, TokenInfo)> {
        let (principal, info) = self.validate_token(token, peer)?;
        if !user.is_empty() && user != info.user {
            return Err(Error::AuthenticationFailed(format!(
                "the token is not user '{user}'s"
            )));
        }
        Ok((principal, info))
    }

    /// A login by password or by token: a secret that is one of the user's
    /// live tokens logs in with it (and the login lasts as long as the
    /// token, [`Login::expires_at`]); anything else is checked as the
    /// user's password.
    pub async fn login_async(
        &self,
        user: &str,
        secret: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Login> {
        if let Ok(token) = std::str::from_utf8(secret)
            && identity::looks_like_token(token)
            && let Ok((principal, info)) = self.token_login(user, token, peer)
        {
            return Ok(Login {
                principal,
                expires_at: Some(info.expires_at),
            });
        }
        let principal = self.authenticate_async(user, secret, peer).await?;
        Ok(Login {
            principal,
            expires_at: None,
        })
    }

    /// Revokes a token.
    pub fn revoke_token(&self, token: &str) -> Result<()> {
        let digest = identity::token_digest(token);
        self.inner
            .tokens
            .remove(&digest)
            .ok_or_else(|| Error::not_found("token", "(given)"))?;
        self.inner.store().submit(Write::ForgetToken(digest), true);
        Ok(())
    }
}

impl EngineInner {
    /// Gives a tenant a project id (at creation, or at recovery of a tenant
    /// stored before projects existed).
    pub(super) fn assign_project(&self, tenant: &str) {
        let rec = ProjectRecord {
            tenant: tenant.to_owned(),
            id: identity::new_project_id(),
        };
        self.store().submit(Write::Project(rec.clone()), true);
        self.projects.put(rec);
    }

    /// A tenant is gone: its project id and the tokens scoped to it too.
    pub(super) fn forget_project(&self, tenant: &str) {
        self.projects.remove(tenant);
        self.store()
            .submit(Write::ForgetProject(tenant.to_owned()), true);
        for d in self.tokens.remove_where(|t| t.tenant == tenant) {
            self.store().submit(Write::ForgetToken(d), true);
        }
    }

    /// A user is gone: its access keys and tokens too.
    pub(super) fn forget_credentials_of(&self, user: &str) {
        for k in self.access_keys.of_user(user) {
            self.access_keys.remove(&k.access);
            self.store().submit(Write::ForgetAccessKey(k.access), true);
        }
        for d in self.tokens.remove_where(|t| t.user == user) {
            self.store().submit(Write::ForgetToken(d), true);
        }
    }

    /// Loads projects, access keys (opening their SKs) and live tokens;
    /// gives tenants without a project id one.
    pub(super) fn recover_identity(
        &self,
        projects: Vec<ProjectRecord>,
        access_keys: Vec<AccessKeyRecord>,
        tokens: Vec<TokenRecord>,
    ) {
        for p in projects {
            self.projects.put(p);
        }
        let tenants: Vec<String> = self.tenants.read().keys().cloned().collect();
        for t in tenants {
            if self.projects.id_of(&t).is_none() {
                self.assign_project(&t);
            }
        }
        for k in access_keys {
            match self.node_key.open(&k.sealed_secret, &k.access) {
                Ok(sk) => self.access_keys.put(k, Arc::from(sk)),
                Err(e) => tracing::error!(
                    access = %k.access,
                    error = %e,
                    "access key left unusable: its SK does not open with this node key"
                ),
            }
        }
        let now = now_millis();
        for t in tokens {
            if t.expires_at > now {
                self.tokens.put(t, now);
            } else {
                self.store().submit(Write::ForgetToken(t.digest), false);
            }
        }
    }
}
