//! Tenants' project ids: the `{project_id}` of cloud APIs. A tenant is
//! named by either its name or its id wherever a project id is expected.

use std::collections::HashMap;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

/// The stored id of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProjectRecord {
    /// The tenant's name.
    pub tenant: String,
    /// 32 lower-case hex digits.
    pub id: String,
}

/// A fresh project id: 128 random bits as 32 lower-case hex digits.
pub(crate) fn new_project_id() -> String {
    let mut b = [0u8; 16];
    rand::fill(&mut b);
    super::hex32(&b)
}

/// True for a string shaped like a project id (32 lower-case hex digits).
pub fn is_project_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Tenant ↔ project id, both ways.
#[derive(Default)]
pub(crate) struct Projects {
    maps: RwLock<Maps>,
}

#[derive(Default)]
struct Maps {
    by_tenant: HashMap<String, String>,
    by_id: HashMap<String, String>,
}

impl Projects {
    pub fn put(&self, rec: ProjectRecord) {
        let mut m = self.maps.write();
        if let Some(old) = m.by_tenant.insert(rec.tenant.clone(), rec.id.clone()) {
            m.by_id.remove(&old);
        }
        m.by_id.insert(rec.id, rec.tenant);
    }

    pub fn remove(&self, tenant: &str) {
        let mut m = self.maps.write();
        if let Some(id) = m.by_tenant.remove(tenant) {
            m.by_id.remove(&id);
        }
    }

    pub fn id_of(&self, tenant: &str) -> Option<String> {
        self.maps.read().by_tenant.get(tenant).cloned()
    }

    pub fn tenant_of(&self, id: &str) -> Option<String> {
        self.maps.read().by_id.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_shaped_and_map_both_ways() {
        let id = new_project_id();
        assert!(is_project_id(&id), "{id}");
        assert!(!is_project_id("ABCDEF0123456789abcdef0123456789"));
        assert!(!is_project_id("abc"));
        let p = Projects::default();
        p.put(ProjectRecord {
            tenant: "t".into(),
            id: id.clone(),
        });
        assert_eq!(p.tenant_of(&id).as_deref(), Some("t"));
        assert_eq!(p.id_of("t"), Some(id.clone()));
        p.remove("t");
        assert_eq!(p.tenant_of(&id), None);
    }
}
