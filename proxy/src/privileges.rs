//! Roles, memberships, table grants and owners as the proxy holds them in memory, and the
//! check of a statement's [`TableAccess`] against them.
//!
//! The durable copy is on the nodes (`users.rs`); this is a snapshot of it, replaced whole
//! when it is read again (at start, on reload, after this proxy changed it). Superusers — the
//! users of the configuration file and roles with SUPERUSER — are never checked.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use mycelium_router::{Privilege, TableAccess};

use crate::auth::Verifier;
use crate::error::{ProxyError, sql_error};

/// The grantee that stands for every role.
pub const PUBLIC: &str = "public";

/// A role made by SQL (config users are not here).
#[derive(Debug, Clone)]
pub struct Role {
    pub verifier: Option<Verifier>,
    pub superuser: bool,
    pub login: bool,
}

/// What a grant applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Object {
    Table(String),
    Schema,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub roles: BTreeMap<String, Role>,
    /// Member → the roles it was granted.
    pub memberships: HashMap<String, BTreeSet<String>>,
    pub grants: HashSet<(String, Object, Privilege)>,
    /// Table → the role that created it.
    pub owners: HashMap<String, String>,
}

impl Catalog {
    /// A fingerprint of the stored roles, memberships, grants and owners: equal on every proxy
    /// that read the same rows, whatever order it holds them in (the cluster map carries it,
    /// so a change made through one proxy tells the others to read them again).
    pub fn digest(&self) -> u64 {
        let mut parts: Vec<String> = self
            .roles
            .iter()
            .map(|(name, role)| format!("role {name} {role:?}"))
            .collect();
        for (member, roles) in &self.memberships {
            parts.push(format!("member {member} {roles:?}"));
        }
        for grant in &self.grants {
            parts.push(format!("grant {grant:?}"));
        }
        for (table, owner) in &self.owners {
            parts.push(format!("owner {table} {owner}"));
        }
        parts.sort_unstable();
        mycelium_router::stable_hash(parts.join("\n").as_bytes())
    }

    /// The user, every role it is a member of (through other roles too), and `public`.
    pub fn effective_roles(&self, user: &str) -> Vec<String> {
        let mut roles = vec![user.to_owned()];
        let mut next = 0;
        while let Some(role) = roles.get(next).cloned() {
            next += 1;
            for parent in self.memberships.get(&role).into_iter().flatten() {
                if !roles.contains(parent) {
                    roles.push(parent.clone());
                }
            }
        }
        roles.push(PUBLIC.to_owned());
        roles
    }

    /// Whether `role` is `member` or has it among its effective roles (so granting `role` to
    /// `member` would make a cycle).
    pub fn contains(&self, role: &str, member: &str) -> bool {
        self.effective_roles(role).iter().any(|r| r == member)
    }

    fn owns(&self, roles: &[String], table: &str) -> bool {
        self.owners
            .get(table)
            .is_some_and(|owner| roles.contains(owner))
    }

    fn granted(&self, roles: &[String], object: &Object, privilege: Privilege) -> bool {
        roles.iter().any(|r| {
            self.grants
                .contains(&(r.clone(), object.clone(), privilege))
        })
    }

    /// Whether `user` (not a superuser) may run a statement that needs `access`. Tables in
    /// `owned_here` were created by this session's open transaction: it owns them already.
    pub fn check(
        &self,
        user: &str,
        access: &TableAccess,
        owned_here: &[String],
    ) -> Result<(), ProxyError> {
        if access.superuser_only {
            return Err(sql_error(
                "42501",
                "permission denied: only a superuser may run this statement on Mycelium",
            ));
        }
        if access.sets_policy {
            return Err(sql_error(
                "42501",
                "permission denied to set mycelium.* table options: only a superuser may \
                 change table policies",
            ));
        }
        let roles = self.effective_roles(user);
        let owns = |table: &String| self.owns(&roles, table) || owned_here.contains(table);
        for table in &access.creates {
            if is_reserved(table) {
                return Err(sql_error(
                    "42501",
                    format!("permission denied to create \"{table}\": the name is reserved"),
                ));
            }
            if !self.granted(&roles, &Object::Schema, Privilege::Create) {
                return Err(sql_error("42501", "permission denied for schema public"));
            }
        }
        for table in &access.owner_of {
            if !owns(table) {
                return Err(sql_error(
                    "42501",
                    format!("must be owner of table {table}"),
                ));
            }
        }
        for (table, privilege) in &access.uses {
            let allowed = !is_reserved(table)
                && (owns(table) || self.granted(&roles, &Object::Table(table.clone()), *privilege));
            if !allowed {
                return Err(sql_error(
                    "42501",
                    format!("permission denied for table {table}"),
                ));
            }
        }
        Ok(())
    }

    /// The grants of one grantee, as `table: SELECT, INSERT; schema public: CREATE`.
    pub fn describe_grants(&self, grantee: &str) -> String {
        let mut by_object: BTreeMap<&Object, Vec<Privilege>> = BTreeMap::new();
        for (who, object, privilege) in &self.grants {
            if who == grantee {
                by_object.entry(object).or_default().push(*privilege);
            }
        }
        by_object
            .into_iter()
            .map(|(object, mut privileges)| {
                privileges.sort();
                let names: Vec<&str> = privileges.iter().map(|p| p.keyword()).collect();
                let object = match object {
                    Object::Table(table) => table.clone(),
                    Object::Schema => "schema public".to_owned(),
                };
                format!("{object}: {}", names.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The tables `role` owns, sorted.
    pub fn owned_by(&self, role: &str) -> Vec<String> {
        let mut tables: Vec<String> = self
            .owners
            .iter()
            .filter(|(_, owner)| *owner == role)
            .map(|(table, _)| table.clone())
            .collect();
        tables.sort();
        tables
    }
}

/// Catalog and system names no role may create, own or be granted.
pub fn is_reserved(table: &str) -> bool {
    table.starts_with("pg_") || table.starts_with("__mycelium")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(uses: &[(&str, Privilege)]) -> TableAccess {
        TableAccess {
            uses: uses.iter().map(|(t, p)| ((*t).to_owned(), *p)).collect(),
            ..TableAccess::default()
        }
    }

    fn code(result: Result<(), ProxyError>) -> String {
        result.err().map(|e| e.to_client().code).unwrap_or_default()
    }

    #[test]
    fn grants_reach_members_and_public() {
        let mut catalog = Catalog::default();
        catalog
            .memberships
            .entry("alice".into())
            .or_default()
            .insert("readers".into());
        catalog
            .memberships
            .entry("readers".into())
            .or_default()
            .insert("staff".into());
        catalog
            .grants
            .insert(("staff".into(), Object::Table("t".into()), Privilege::Select));
        catalog
            .grants
            .insert((PUBLIC.into(), Object::Table("p".into()), Privilege::Insert));
        catalog.owners.insert("own".into(), "bob".into());
        let select_t = access(&[("t", Privilege::Select)]);
        assert_eq!(code(catalog.check("alice", &select_t, &[])), "");
        assert_eq!(code(catalog.check("bob", &select_t, &[])), "42501");
        let insert_p = access(&[("p", Privilege::Insert)]);
        assert_eq!(code(catalog.check("bob", &insert_p, &[])), "");
        let delete_own = access(&[("own", Privilege::Delete)]);
        assert_eq!(code(catalog.check("bob", &delete_own, &[])), "");
        assert_eq!(code(catalog.check("alice", &delete_own, &[])), "42501");
        assert_eq!(
            code(catalog.check("alice", &delete_own, &["own".to_owned()])),
            ""
        );
        assert!(catalog.contains("alice", "staff"));
        assert!(!catalog.contains("staff", "alice"));
    }

    #[test]
    fn creating_needs_the_schema_privilege_and_a_free_name() {
        let mut catalog = Catalog::default();
        let create = |table: &str| TableAccess {
            creates: vec![table.to_owned()],
            ..TableAccess::default()
        };
        assert_eq!(code(catalog.check("u", &create("t"), &[])), "42501");
        catalog
            .grants
            .insert(("u".into(), Object::Schema, Privilege::Create));
        assert_eq!(code(catalog.check("u", &create("t"), &[])), "");
        assert_eq!(code(catalog.check("u", &create("pg_x"), &[])), "42501");
        assert_eq!(
            code(catalog.check("u", &create("__mycelium_roles"), &[])),
            "42501"
        );
    }
}
