//! Projects, access keys and tokens are durable records like users: they
//! survive a restart, an SK is stored sealed (never in clear), and deleting
//! a user or tenant takes its credentials with it.

use gw_core::Error;

use crate::common::Backend;

pub async fn projects_access_keys_and_tokens_survive_a_restart(b: Backend) {
    let (ak, sk, token, project, other_project);
    {
        let e = b.open();
        project = e
            .project_id("/")
            .expect("the default tenant has a project id");
        assert!(gw_core::is_project_id(&project), "{project}");
        e.create_tenant("t2").unwrap();
        other_project = e.project_id("t2").unwrap();
        assert_ne!(project, other_project);
        assert_eq!(e.tenant_of_project(&other_project).as_deref(), Some("t2"));
        assert_eq!(e.tenant_of_project("t2").as_deref(), Some("t2"));
        assert_eq!(e.tenant_of_project("nope"), None);

        let (info, secret) = e.create_access_key("guest", "ci").unwrap();
        assert_eq!((info.access.len(), secret.len()), (20, 40));
        let (second, _) = e.create_access_key("guest", "").unwrap();
        assert!(matches!(
            e.create_access_key("guest", "third"),
            Err(Error::LimitReached(_))
        ));
        e.update_access_key(&second.access, Some(false), Some("old"))
            .unwrap();
        assert!(e.access_key_secret(&second.access, None).is_err());
        ak = info.access;
        sk = secret;

        let guest = e.principal("guest").unwrap();
        let (t, ti) = e.issue_token(&guest, "/", "password", 3_600_000).unwrap();
        assert_eq!(ti.tenant, "/");
        assert!(e.issue_token(&guest, "t2", "password", 1000).is_err());
        let (revoked, _) = e.issue_token(&guest, "/", "password", 1000).unwrap();
        e.revoke_token(&revoked).unwrap();
        assert!(e.validate_token(&revoked, None).is_err());
        let (expired, _) = e.issue_token(&guest, "/", "password", 0).unwrap();
        assert!(matches!(
            e.validate_token(&expired, None),
            Err(Error::AuthenticationFailed(m)) if m.contains("expired")
        ));
        token = t;
        e.close();
    }
    let e = b.open();
    assert_eq!(e.project_id("/").as_deref(), Some(project.as_str()));
    assert_eq!(e.project_id("t2").as_deref(), Some(other_project.as_str()));
    let (p, secret) = e.access_key_secret(&ak, None).unwrap();
    assert_eq!((p.user(), &*secret), ("guest", sk.as_bytes()));
    let keys = e.access_keys(Some("guest"));
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k.active).count(), 1);
    let (p, info) = e.validate_token(&token, None).unwrap();
    assert_eq!((p.user(), info.tenant.as_str()), ("guest", "/"));

    // A user's credentials and a tenant's tokens go with them.
    e.put_user("alice", "pw", vec![]).unwrap();
    e.set_permission("alice", gw_core::Permission::full("t2"))
        .unwrap();
    let alice = e.principal("alice").unwrap();
    let (alice_token, _) = e.issue_token(&alice, "t2", "password", 60_000).unwrap();
    let (alice_key, _) = e.create_access_key("alice", "").unwrap();
    e.delete_tenant("t2").unwrap();
    assert!(e.validate_token(&alice_token, None).is_err());
    assert_eq!(e.tenant_of_project(&other_project), None);
    e.delete_user("alice").unwrap();
    assert!(e.access_key(&alice_key.access).is_none());
    e.close();
    drop(e);

    let e = b.open();
    assert!(e.access_key(&alice_key.access).is_none());
    assert_eq!(e.project_id("t2"), None);
    e.close();
}

/// On disk the SK is sealed with `node.key` (mode 0600), not in clear.
pub async fn secrets_are_not_stored_in_clear(b: Backend) {
    let e = b.open();
    let (_, sk) = e.create_access_key("guest", "").unwrap();
    let guest = e.principal("guest").unwrap();
    let (token, _) = e.issue_token(&guest, "/", "password", 60_000).unwrap();
    e.close();
    let Backend::Fjall(dir) = &b else { return };
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("node.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in [sk.as_bytes(), token.as_bytes()] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} holds a secret in clear",
                entry.display()
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
