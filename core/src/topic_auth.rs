//! Topic authorisation, as RabbitMQ's topic permissions (and Mosquitto's
//! pattern ACLs): per user, tenant and topic exchange, a `write` and a `read`
//! regular expression matched against routing keys. Publishing to a topic
//! exchange checks the routing key against `write`; binding a queue to one
//! (an MQTT SUBSCRIBE, an AMQP `queue.bind`) checks the binding key against
//! `read`. A user with no topic permission for an exchange may use every
//! routing key of it, as in RabbitMQ.
//!
//! Patterns may name the user and the client: `{username}`, `{vhost}` and
//! `{client_id}` (RabbitMQ's variables), or `%u` and `%c` (Mosquitto's), are
//! replaced by the connection's values, escaped, before the pattern is
//! compiled; so `^devices\.%u\..*` lets each device publish under its own name only.
//! MQTT topics are checked in their routing-key form (`/` becomes `.`).

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::auth::Access;
use crate::error::{Error, Result};

/// One topic permission of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPermission {
    /// The tenant (vhost).
    pub tenant: String,
    /// The topic exchange it governs.
    pub exchange: String,
    /// Routing keys the user may publish with ("" allows none).
    pub write: String,
    /// Binding keys the user may bind (subscribe) with ("" allows none).
    pub read: String,
}

/// A user's topic permissions on one tenant, compiled for one connection
/// (its user name and client id substituted).
#[derive(Debug)]
pub struct TopicRules {
    user: String,
    tenant: String,
    rules: Vec<CompiledRule>,
}

#[derive(Debug)]
struct CompiledRule {
    exchange: String,
    write: Option<Regex>,
    read: Option<Regex>,
}

impl TopicRules {
    /// Compiles `permissions` (a user's, any tenant) for a connection of
    /// `user` with `client_id` to `tenant`; `None` when none concerns that
    /// tenant. Patterns were checked when they were set; one that still does
    /// not compile with this connection's names (a size limit) allows nothing.
    pub(crate) fn compile(
        permissions: &[TopicPermission],
        user: &str,
        tenant: &str,
        client_id: &str,
    ) -> Option<TopicRules> {
        let compile = |pattern: &str| {
            compile_pattern(pattern, user, tenant, client_id).unwrap_or_else(|e| {
                tracing::warn!(user, tenant, pattern, cause = %e, "topic permission pattern allows nothing");
                None
            })
        };
        let rules: Vec<CompiledRule> = permissions
            .iter()
            .filter(|p| p.tenant == tenant)
            .map(|p| CompiledRule {
                exchange: p.exchange.clone(),
                write: compile(&p.write),
                read: compile(&p.read),
            })
            .collect();
        (!rules.is_empty()).then(|| TopicRules {
            user: user.to_owned(),
            tenant: tenant.to_owned(),
            rules,
        })
    }

    /// Checks a routing key (`Write`: a publish) or a binding key (`Read`: a
    /// bind or subscription) on a topic exchange.
    pub fn check(&self, exchange: &str, access: Access, key: &str) -> Result<()> {
        let mut governed = false;
        for rule in self.rules.iter().filter(|r| r.exchange == exchange) {
            governed = true;
            let re = match access {
                Access::Write => &rule.write,
                Access::Read => &rule.read,
                Access::Configure => return Ok(()),
            };
            if re.as_ref().is_some_and(|r| r.is_match(key)) {
                return Ok(());
            }
        }
        if !governed {
            return Ok(());
        }
        let what = match access {
            Access::Write => "write",
            _ => "read",
        };
        Err(Error::AccessRefused(format!(
            "{what} access to topic '{key}' of exchange '{exchange}' in tenant '{}' refused for user '{}'",
            self.tenant, self.user
        )))
    }
}

/// A pattern with the connection's names in it, compiled ("": none).
fn compile_pattern(
    pattern: &str,
    user: &str,
    tenant: &str,
    client_id: &str,
) -> Result<Option<Regex>> {
    if pattern.is_empty() {
        return Ok(None);
    }
    Regex::new(&expand(pattern, user, tenant, client_id))
        .map(Some)
        .map_err(|e| Error::invalid("topic permission pattern", e.to_string()))
}

/// The pattern with the connection's values in place of the variables,
/// each escaped so that it matches only itself.
fn expand(pattern: &str, user: &str, tenant: &str, client_id: &str) -> String {
    let (user, tenant, client_id) = (
        regex::escape(user),
        regex::escape(tenant),
        regex::escape(client_id),
    );
    pattern
        .replace("{username}", &user)
        .replace("{vhost}", &tenant)
        .replace("{client_id}", &client_id)
        .replace("%u", &user)
        .replace("%c", &client_id)
}

/// Checks a topic permission before it is stored: names valid, patterns
/// compile (with sample values in the variables).
pub(crate) fn validate(p: &TopicPermission) -> Result<()> {
    crate::names::check_name("tenant", &p.tenant)?;
    crate::names::check_name("exchange", &p.exchange)?;
    compile_pattern(&p.write, "user", &p.tenant, "client")?;
    compile_pattern(&p.read, "user", &p.tenant, "client")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(exchange: &str, write: &str, read: &str) -> TopicPermission {
        TopicPermission {
            tenant: "/".into(),
            exchange: exchange.into(),
            write: write.into(),
            read: read.into(),
        }
    }

    #[test]
    fn keys_are_checked_per_exchange_with_the_connection_s_names() {
        let perms = [perm(
            "amq.topic",
            r"^devices\.%u\..*",
            r"^(devices\.{username}|public)\..*",
        )];
        let rules = TopicRules::compile(&perms, "dev1", "/", "c-1").unwrap();
        assert!(
            rules
                .check("amq.topic", Access::Write, "devices.dev1.temp")
                .is_ok()
        );
        let e = rules
            .check("amq.topic", Access::Write, "devices.dev2.temp")
            .unwrap_err()
            .to_string();
        assert!(e.contains("devices.dev2.temp") && e.contains("dev1"), "{e}");
        assert!(
            rules
                .check("amq.topic", Access::Read, "public.news")
                .is_ok()
        );
        assert!(
            rules
                .check("amq.topic", Access::Read, "devices.dev2.#")
                .is_err()
        );
        // Another exchange is not governed.
        assert!(rules.check("other", Access::Write, "anything").is_ok());
        // Another tenant has no rules at all.
        assert!(TopicRules::compile(&perms, "dev1", "t2", "c").is_none());
    }

    #[test]
    fn names_are_escaped_and_empty_patterns_allow_nothing() {
        let perms = [perm("x", r"^a\.%c$", "")];
        // A client id with regex characters matches only itself.
        let rules = TopicRules::compile(&perms, "u", "/", "c.*").unwrap();
        assert!(rules.check("x", Access::Write, "a.c.*").is_ok());
        assert!(rules.check("x", Access::Write, "a.cXY").is_err());
        assert!(rules.check("x", Access::Read, "a.c.*").is_err());
        // Several rules for one exchange: any may allow.
        let perms = [perm("x", "^a$", ""), perm("x", "^b$", "")];
        let rules = TopicRules::compile(&perms, "u", "/", "c").unwrap();
        assert!(rules.check("x", Access::Write, "b").is_ok());
        assert!(validate(&perm("x", "(", "")).is_err());
        assert!(validate(&perm("", ".*", "")).is_err());
    }
}
