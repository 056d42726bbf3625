//! Users, passwords and permissions: the authentication service every door calls.
//!
//! Passwords are stored as Argon2id hashes (PHC strings), never in clear.
//! Because Argon2 is deliberately slow (tens of ms), a successful check is
//! remembered by a SHA-256 of the password, so reconnect storms of thousands of
//! devices with the same credentials cost one hash each, not one Argon2.
//!
//! Permissions follow RabbitMQ: per tenant, three regular expressions
//! (configure, write, read) matched against resource names.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use parking_lot::RwLock;
use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::topic_auth::{TopicPermission, TopicRules};

/// How long a failed password is answered from memory.
const FAILED_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a login check stands before Argon2.
enum LoginStep {
    /// The password is the one that passed last time.
    Known(Arc<UserRecord>),
    /// Argon2 must say.
    Verify(Arc<UserRecord>, [u8; 32]),
}
/// Users whose last failed password is remembered.
const FAILED_MAX: usize = 10_000;

/// The administrator tag: may use the management API.
pub const ADMINISTRATOR: &str = "administrator";

/// A stored user.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Tags such as `administrator`.
    pub tags: Vec<String>,
    /// May only connect from loopback (the default `guest`).
    pub loopback_only: bool,
    /// What the user may do, per tenant.
    pub permissions: Vec<Permission>,
}

/// RabbitMQ-style permission on one tenant: regular expressions matched against
/// resource names ("" matches nothing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// The tenant (vhost).
    pub tenant: String,
    /// Declare and delete resources.
    pub configure: String,
    /// Publish to exchanges, bind from them.
    pub write: String,
    /// Consume from queues, bind to them.
    pub read: String,
}

impl Permission {
    /// Everything on a tenant.
    pub fn full(tenant: &str) -> Self {
        Permission {
            tenant: tenant.into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }
}

/// Kinds of access a permission grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Declare, delete.
    Configure,
    /// Publish, bind from an exchange.
    Write,
    /// Consume, bind to a queue.
    Read,
}

/// What a user may see of itself (no hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Limited to loopback connections.
    pub loopback_only: bool,
    /// Permissions per tenant.
    pub permissions: Vec<Permission>,
}

struct CompiledPermission {
    tenant: String,
    configure: Option<Regex>,
    write: Option<Regex>,
    read: Option<Regex>,
}

fn compile(pattern: &str) -> Result<Option<Regex>> {
    if pattern.is_empty() {
        return Ok(None);
    }
    // RabbitMQ matches the whole pattern anywhere unless anchored; the same here.
    Regex::new(pattern)
        .map(Some)
        .map_err(|e| Error::invalid("permission pattern", e.to_string()))
}

/// An authenticated user, as the doors hold it for a connection.
#[derive(Clone)]
pub struct Principal {
    user: Arc<str>,
    tags: Arc<[String]>,
    /// One allocation for both kinds of permission: a principal is held
    /// by every connection (the MQTT door's per-connection state is bounded).
    rights: Arc<Rights>,
    /// A token's project: the principal may use no other tenant.
    scope: Option<Arc<str>>,
}

/// What a principal may do.
struct Rights {
    permissions: Vec<CompiledPermission>,
    /// The user's topic permissions (every tenant), compiled per connection
    /// by [`Principal::topic_rules`].
    topic: Vec<TopicPermission>,
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal")
            .field("user", &self.user)
            .field("tags", &self.tags)
            .finish()
    }
}

impl Principal {
    fn from_record(rec: &UserRecord, topic: Vec<TopicPermission>) -> Result<Self> {
        let permissions = rec
            .permissions
            .iter()
            .map(|p| {
                Ok(CompiledPermission {
                    tenant: p.tenant.clone(),
                    configure: compile(&p.configure)?,
                    write: compile(&p.write)?,
                    read: compile(&p.read)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Principal {
            user: rec.name.as_str().into(),
            tags: rec.tags.clone().into(),
            rights: Arc::new(Rights { permissions, topic }),
            scope: None,
        })
    }

    /// The user's topic permissions on `tenant`, compiled for a connection
    /// with `client_id` (MQTT's; "" elsewhere); `None` when it has none
    /// there, so every routing key is allowed.
    pub fn topic_rules(&self, tenant: &str, client_id: &str) -> Option<TopicRules> {
        TopicRules::compile(&self.rights.topic, &self.user, tenant, client_id)
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The user's tags.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// True for users tagged `administrator`.
    pub fn is_administrator(&self) -> bool {
        self.tags.iter().any(|t| t == ADMINISTRATOR)
    }

    /// The same user limited to one tenant (a token scoped to a project).
    pub fn scoped_to(mut self, tenant: &str) -> Self {
        self.scope = Some(tenant.into());
        self
    }

    /// The one tenant this principal is limited to, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    fn in_scope(&self, tenant: &str) -> bool {
        self.scope.as_deref().is_none_or(|s| s == tenant)
    }

    /// True when the user has any permission on the tenant (and it is in scope).
    pub fn may_use_tenant(&self, tenant: &str) -> bool {
        self.in_scope(tenant) && self.rights.permissions.iter().any(|p| p.tenant == tenant)
    }

    /// Checks one access to a named resource; the default exchange is checked
    /// as `amq.default`, as RabbitMQ does.
    pub fn check(&self, tenant: &str, access: Access, resource: &str) -> Result<()> {
        let resource = if resource.is_empty() {
            "amq.default"
        } else {
            resource
        };
        let allowed = self.in_scope(tenant)
            && self
                .rights
                .permissions
                .iter()
                .filter(|p| p.tenant == tenant)
                .any(|p| {
                    let re = match access {
                        Access::Configure => &p.configure,
                        Access::Write => &p.write,
                        Access::Read => &p.read,
                    };
                    re.as_ref().is_some_and(|r| r.is_match(resource))
                });
        if allowed {
            Ok(())
        } else {
            let what = match access {
                Access::Configure => "configure",
                Access::Write => "write",
                Access::Read => "read",
            };
            Err(Error::AccessRefused(format!(
                "{what} access to '{resource}' in tenant '{tenant}' refused for user '{}'",
                self.user
            )))
        }
    }
}

/// The user registry. Changes are written by the engine (it owns the store).
#[derive(Default)]
pub(crate) struct Users {
    users: RwLock<HashMap<String, Arc<UserRecord>>>,
    /// user → SHA-256 of the password last verified against its hash.
    verified: RwLock<HashMap<String, [u8; 32]>>,
    /// user → SHA-256 of the password that last failed, and when (bounded).
    failed: RwLock<HashMap<String, ([u8; 32], std::time::Instant)>>,
    /// Compiled permissions, shared by every connection of a user (compiling
    /// the regexes per login costs tens of KiB and microseconds).
    principals: RwLock<HashMap<String, Principal>>,
    /// Topic permissions by user.
    topic: RwLock<HashMap<String, Vec<TopicPermission>>>,
}

impl Users {
    pub fn load(&self, records: impl IntoIterator<Item = UserRecord>) {
        let mut u = self.users.write();
        for r in records {
            u.insert(r.name.clone(), Arc::new(r));
        }
    }

    /// Every user's topic permissions, at start.
    pub fn load_topic(&self, records: impl IntoIterator<Item = (String, TopicPermission)>) {
        let mut t = self.topic.write();
        for (user, p) in records {
            t.entry(user).or_default().push(p);
        }
    }

    /// Sets (`Some`) or removes one topic permission of a user (on one exchange of one tenant).
    pub fn put_topic(&self, user: &str, tenant: &str, exchange: &str, p: Option<TopicPermission>) {
        let mut t = self.topic.write();
        let list = t.entry(user.to_owned()).or_default();
        list.retain(|q| !(q.tenant == tenant && q.exchange == exchange));
        list.extend(p);
        if list.is_empty() {
            t.remove(user);
        }
        drop(t);
        self.principals.write().remove(user);
    }

    /// Topic permissions as (user, permission), sorted.
    pub fn topic_permissions(&self) -> Vec<(String, TopicPermission)> {
        let mut v: Vec<_> = self
            .topic
            .read()
            .iter()
            .flat_map(|(u, list)| list.iter().map(move |p| (u.clone(), p.clone())))
            .collect();
        v.sort_by(|a, b| {
            (&a.0, &a.1.tenant, &a.1.exchange).cmp(&(&b.0, &b.1.tenant, &b.1.exchange))
        });
        v
    }

    /// Every user's stored record.
    pub fn records(&self) -> Vec<Arc<UserRecord>> {
        self.users.read().values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<UserRecord>> {
        self.users.read().get(name).cloned()
    }

    pub fn list(&self) -> Vec<UserInfo> {
        let mut v: Vec<UserInfo> = self
            .users
            .read()
            .values()
            .map(|u| UserInfo {
                name: u.name.clone(),
                tags: u.tags.clone(),
                loopback_only: u.loopback_only,
                permissions: u.permissions.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn put(&self, rec: UserRecord) {
        self.verified.write().remove(&rec.name);
        self.failed.write().remove(&rec.name);
        self.principals.write().remove(&rec.name);
        self.users.write().insert(rec.name.clone(), Arc::new(rec));
    }

    pub fn remove(&self, name: &str) -> bool {
        self.topic.write().remove(name);
        self.verified.write().remove(name);
        self.failed.write().remove(name);
        self.principals.write().remove(name);
        self.users.write().remove(name).is_some()
    }

    /// Checks a login. Wrong user and wrong password give the same error.
    /// Blocks while Argon2 runs (on the check threads): call it where
    /// blocking is allowed, or use [`Users::authenticate_async`].
    pub fn authenticate(
        &self,
        name: &str,
        password: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Principal> {
        match self.login_start(name, password, peer)? {
            LoginStep::Known(rec) => self.compiled(&rec),
            LoginStep::Verify(rec, digest) => {
                let ok = crate::password_check::verify(password, &rec.password_hash);
                self.login_finish(&rec, digest, ok)
            }
        }
    }

    /// [`Users::authenticate`] for async callers: it waits for the check
    /// threads without holding a runtime worker.
    pub async fn authenticate_async(
        &self,
        name: &str,
        password: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Principal> {
        match self.login_start(name, password, peer)? {
            LoginStep::Known(rec) => self.compiled(&rec),
            LoginStep::Verify(rec, digest) => {
                let ok = crate::password_check::verify_async(password, &rec.password_hash).await;
                self.login_finish(&rec, digest, ok)
            }
        }
    }

    /// Everything of a login check but Argon2: the user, the loopback rule,
    /// and the memories of a password that just passed or just failed.
    fn login_start(&self, name: &str, password: &[u8], peer: Option<IpAddr>) -> Result<LoginStep> {
        let fail = || Error::AuthenticationFailed(name.to_owned());
        let rec = self.get(name).ok_or_else(fail)?;
        if rec.loopback_only && !peer.is_none_or(|ip| ip.is_loopback()) {
            return Err(Error::AuthenticationFailed(format!(
                "{name} (only from loopback)"
            )));
        }
        let digest: [u8; 32] = Sha256::digest(password).into();
        if self.verified.read().get(name).is_some_and(|d| *d == digest) {
            return Ok(LoginStep::Known(rec));
        }
        // A password that just failed fails again without another Argon2:
        // a client retrying a wrong password costs a hash, not 19 MiB.
        let failed_recently = self
            .failed
            .read()
            .get(name)
            .is_some_and(|(d, at)| *d == digest && at.elapsed() < FAILED_TTL);
        if failed_recently {
            return Err(fail());
        }
        Ok(LoginStep::Verify(rec, digest))
    }

    /// Remembers what Argon2 said about a password.
    fn login_finish(&self, rec: &UserRecord, digest: [u8; 32], ok: bool) -> Result<Principal> {
        let name = rec.name.as_str();
        if !ok {
            let mut failed = self.failed.write();
            if failed.len() >= FAILED_MAX && !failed.contains_key(name) {
                failed.retain(|_, (_, at)| at.elapsed() < FAILED_TTL);
            }
            if failed.len() < FAILED_MAX {
                failed.insert(name.to_owned(), (digest, std::time::Instant::now()));
            }
            return Err(Error::AuthenticationFailed(name.to_owned()));
        }
        self.failed.write().remove(name);
        self.verified.write().insert(name.to_owned(), digest);
        self.compiled(rec)
    }

    fn compiled(&self, rec: &UserRecord) -> Result<Principal> {
        if let Some(p) = self.principals.read().get(&rec.name) {
            return Ok(p.clone());
        }
        let topic = self
            .topic
            .read()
            .get(&rec.name)
            .cloned()
            .unwrap_or_default();
        let p = Principal::from_record(rec, topic)?;
        self.principals.write().insert(rec.name.clone(), p.clone());
        Ok(p)
    }

    /// The principal of a user who proved itself otherwise (an access key, a
    /// token), refused from elsewhere than loopback for loopback-only users.
    pub fn principal_from(&self, name: &str, peer: Option<IpAddr>) -> Result<Principal> {
        let rec = self
            .get(name)
            .ok_or_else(|| Error::AuthenticationFailed(format!("{name} (no such user)")))?;
        if rec.loopback_only && !peer.is_none_or(|ip| ip.is_loopback()) {
            return Err(Error::AuthenticationFailed(format!(
                "{name} (only from loopback)"
            )));
        }
        self.compiled(&rec)
    }

    /// A login vouched for by a verified client certificate (TLS): no
    /// password, but the user must exist and the loopback rule holds as for
    /// a password. An unknown user fails as a wrong password does.
    pub fn authenticate_certificate(&self, name: &str, peer: Option<IpAddr>) -> Result<Principal> {
        let rec = self
            .get(name)
            .ok_or_else(|| Error::AuthenticationFailed(name.to_owned()))?;
        if rec.loopback_only && !peer.is_none_or(|ip| ip.is_loopback()) {
            return Err(Error::AuthenticationFailed(format!(
                "{name} (only from loopback)"
            )));
        }
        self.compiled(&rec)
    }

    /// The principal of a user without a password check (anonymous logins the
    /// configuration maps to a user).
    pub fn principal(&self, name: &str) -> Result<Principal> {
        let rec = self
            .get(name)
            .ok_or_else(|| Error::not_found("user", name))?;
        self.compiled(&rec)
    }
}

/// Hashes a password for storage.
pub(crate) fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| Error::invalid("password", e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::invalid("password", e.to_string()))
}

/// Checks permission patterns compile.
pub(crate) fn validate_permission(p: &Permission) -> Result<()> {
    crate::names::check_name("tenant", &p.tenant)?;
    compile(&p.configure)?;
    compile(&p.write)?;
    compile(&p.read)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, pw: &str, loopback_only: bool) -> UserRecord {
        UserRecord {
            name: name.into(),
            password_hash: hash_password(pw).unwrap(),
            tags: vec![],
            loopback_only,
            permissions: vec![Permission {
                tenant: "/".into(),
                configure: "^own-".into(),
                write: ".*".into(),
                read: "".into(),
            }],
        }
    }

    #[test]
    fn passwords_and_loopback() {
        let users = Users::default();
        users.load([user("a", "secret", true)]);
        let rec = users.get("a").unwrap();
        assert!(!rec.password_hash.contains("secret"));
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(users.authenticate("a", b"secret", Some(local)).is_ok());
        // Cached path gives the same answers.
        assert!(users.authenticate("a", b"secret", Some(local)).is_ok());
        assert!(users.authenticate("a", b"wrong", Some(local)).is_err());
        assert!(users.authenticate("a", b"secret", Some(remote)).is_err());
        assert!(
            users
                .authenticate("nobody", b"secret", Some(local))
                .is_err()
        );
    }

    #[test]
    fn permissions_match_like_rabbitmq() {
        let users = Users::default();
        users.load([user("a", "pw", false)]);
        let p = users.principal("a").unwrap();
        assert!(p.check("/", Access::Configure, "own-queue").is_ok());
        assert!(p.check("/", Access::Configure, "other").is_err());
        assert!(p.check("/", Access::Write, "").is_ok());
        assert!(p.check("/", Access::Read, "anything").is_err());
        assert!(p.check("other", Access::Write, "x").is_err());
        assert!(p.may_use_tenant("/"));
        assert!(!p.may_use_tenant("t2"));
    }
}
