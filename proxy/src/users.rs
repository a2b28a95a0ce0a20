//! Users, roles, grants and table owners stored on every node, in system tables the emulated
//! `pg_catalog` hides, so every proxy finds them after a restart. Passwords are stored only as
//! SCRAM-SHA-256 verifiers.
//!
//! A change (CREATE ROLE, GRANT, a table created or dropped) is written on every node inside
//! the client's transaction, as table policies are; outside one, as a transaction of its own
//! on each node. This proxy reads the tables again once the session is outside a transaction,
//! so its memory only ever holds what committed. Other proxies read them at start and on
//! reload (SIGHUP). Statements inside a transaction are checked against the committed state,
//! except that tables the transaction created are its own.

use mycelium_protocol::{DbError, Execute, NodeSession};
use mycelium_router::{GrantTarget, Privilege, RoleCommand, RoleOption};

use crate::Proxy;
use crate::auth::Verifier;
use crate::backend::{self, TxnStatus};
use crate::error::{ProxyError, sql_error};
use crate::policy_store::{run, text_params};
use crate::privileges::{Catalog, Object, PUBLIC, Role, is_reserved};
use crate::session::Session;

const CREATE_TABLES: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS __mycelium_roles (name text PRIMARY KEY, verifier text, \
     superuser text NOT NULL, login text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS __mycelium_role_members (role text NOT NULL, member text NOT NULL, \
     PRIMARY KEY (role, member))",
    "CREATE TABLE IF NOT EXISTS __mycelium_grants (grantee text NOT NULL, kind text NOT NULL, \
     object text NOT NULL, privilege text NOT NULL, PRIMARY KEY (grantee, kind, object, privilege))",
    "CREATE TABLE IF NOT EXISTS __mycelium_owners (table_name text PRIMARY KEY, owner text NOT NULL)",
];

const INSERT_ROLE: &str =
    "INSERT INTO __mycelium_roles (name, verifier, superuser, login) VALUES ($1, $2, $3, $4)";
const UPDATE_ROLE: &str =
    "UPDATE __mycelium_roles SET verifier = $2, superuser = $3, login = $4 WHERE name = $1";
const DELETE_ROLE: &str = "DELETE FROM __mycelium_roles WHERE name = $1";
const INSERT_MEMBER: &str = "INSERT INTO __mycelium_role_members (role, member) VALUES ($1, $2) \
     ON CONFLICT DO NOTHING";
const DELETE_MEMBER: &str = "DELETE FROM __mycelium_role_members WHERE role = $1 AND member = $2";
const DELETE_MEMBERSHIPS: &str =
    "DELETE FROM __mycelium_role_members WHERE role = $1 OR member = $1";
const INSERT_GRANT: &str = "INSERT INTO __mycelium_grants (grantee, kind, object, privilege) \
     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
const DELETE_GRANT: &str = "DELETE FROM __mycelium_grants \
     WHERE grantee = $1 AND kind = $2 AND object = $3 AND privilege = $4";
const DELETE_GRANTS_OF: &str = "DELETE FROM __mycelium_grants WHERE grantee = $1";
const DELETE_GRANTS_ON: &str = "DELETE FROM __mycelium_grants WHERE kind = 'table' AND object = $1";
const INSERT_OWNER: &str = "INSERT INTO __mycelium_owners (table_name, owner) VALUES ($1, $2) \
     ON CONFLICT DO NOTHING";
const DELETE_OWNER: &str = "DELETE FROM __mycelium_owners WHERE table_name = $1";
const TABLE_EXISTS: &str =
    "SELECT relname FROM pg_catalog.pg_class WHERE relname = $1 AND relkind IN ('r', 'v')";
const SEQUENCE_EXISTS: &str =
    "SELECT relname FROM pg_catalog.pg_class WHERE relname = $1 AND relkind = 'S'";
const ALL_TABLES: &str =
    "SELECT relname FROM pg_catalog.pg_class WHERE relkind IN ('r', 'v') AND relnamespace = 2200";

/// What a session must do about roles and owners besides running its statements.
#[derive(Default)]
pub(crate) struct SessionAccess {
    /// The session changed the stored roles or owners: read them again once outside a
    /// transaction.
    pub changed: bool,
    /// Tables the open transaction created, owned by this session's user until then.
    pub owned_here: Vec<String>,
}

/// Tables a successful DDL statement created (that did not exist before) or dropped.
pub(crate) struct DdlFollowUp {
    creates: Vec<String>,
    drops: Vec<String>,
}

impl Proxy {
    /// Creates the system tables on every node if missing and reads the stored roles, grants
    /// and owners from the first node.
    pub async fn load_access(&self) -> Result<(), DbError> {
        let mut catalog = None;
        for node in &self.cluster.nodes {
            let mut session = node.link.open_session().await?;
            for create in CREATE_TABLES {
                run(session.as_mut(), Execute::simple(create)).await?;
            }
            if catalog.is_none() {
                catalog = Some(read_catalog(session.as_mut()).await?);
            }
        }
        self.install_catalog(catalog.unwrap_or_default());
        Ok(())
    }
}

/// Reads the four system tables through `session` (inside whatever transaction it has open).
async fn read_catalog(session: &mut dyn NodeSession) -> Result<Catalog, DbError> {
    let mut catalog = Catalog::default();
    let select = |sql: &'static str| Execute::simple(sql);
    for row in run(
        session,
        select("SELECT name, verifier, superuser, login FROM __mycelium_roles"),
    )
    .await?
    {
        let [Some(name), verifier, Some(superuser), Some(login)] = row.as_slice() else {
            continue;
        };
        let verifier = match verifier.as_deref().map(Verifier::parse) {
            Some(None) => {
                tracing::warn!(role = %name, "ignoring a stored verifier that does not parse");
                None
            }
            Some(parsed) => parsed,
            None => None,
        };
        catalog.roles.insert(
            name.clone(),
            Role {
                verifier,
                superuser: superuser == "true",
                login: login == "true",
            },
        );
    }
    for row in run(
        session,
        select("SELECT role, member FROM __mycelium_role_members"),
    )
    .await?
    {
        if let [Some(role), Some(member)] = row.as_slice() {
            catalog
                .memberships
                .entry(member.clone())
                .or_default()
                .insert(role.clone());
        }
    }
    for row in run(
        session,
        select("SELECT grantee, kind, object, privilege FROM __mycelium_grants"),
    )
    .await?
    {
        let [Some(grantee), Some(kind), Some(object), Some(privilege)] = row.as_slice() else {
            continue;
        };
        let object = match kind.as_str() {
            "schema" => Object::Schema,
            _ => Object::Table(object.clone()),
        };
        if let Some(privilege) = Privilege::from_keyword(privilege) {
            catalog.grants.insert((grantee.clone(), object, privilege));
        }
    }
    for row in run(
        session,
        select("SELECT table_name, owner FROM __mycelium_owners"),
    )
    .await?
    {
        if let [Some(table), Some(owner)] = row.as_slice() {
            catalog.owners.insert(table.clone(), owner.clone());
        }
    }
    Ok(catalog)
}

/// A grant's object as stored: kind and name.
fn object_columns(object: &Object) -> (&'static str, &str) {
    match object {
        Object::Table(table) => ("table", table),
        Object::Schema => ("schema", "public"),
    }
}

fn grant_write(sql: &str, grantee: &str, object: &Object, privilege: Privilege) -> Execute {
    let (kind, name) = object_columns(object);
    text_params(sql, &[grantee, kind, name, privilege.keyword()])
}

fn role_write(sql: &str, name: &str, role: &Role) -> Execute {
    let verifier = role.verifier.as_ref().map(Verifier::to_text);
    let mut execute = text_params(
        sql,
        &[
            name,
            verifier.as_deref().unwrap_or(""),
            bool_text(role.superuser),
            bool_text(role.login),
        ],
    );
    if verifier.is_none() {
        execute.params[1] = None;
    }
    execute
}

fn bool_text(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

fn not_exists(role: &str) -> ProxyError {
    sql_error("42704", format!("role \"{role}\" does not exist"))
}

fn superuser_only(what: &str) -> ProxyError {
    sql_error(
        "42501",
        format!("permission denied to {what}: only a superuser may manage users and roles"),
    )
}

/// A password as typed: a SCRAM-SHA-256 verifier is stored as it is (as Postgres does), any
/// other text is hashed; MD5 hashes are refused, an empty password means none.
fn verifier_from_sql(text: &str) -> Result<Option<Verifier>, ProxyError> {
    if text.is_empty() {
        return Ok(None);
    }
    if text.starts_with("SCRAM-SHA-256$") {
        return Verifier::parse(text).map(Some).ok_or_else(|| {
            sql_error(
                "22023",
                "the password looks like a SCRAM-SHA-256 verifier but does not parse",
            )
        });
    }
    if text.len() == 35
        && text.starts_with("md5")
        && text[3..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(ProxyError::Db(
            DbError::new("0A000", "MD5 password hashes are not supported")
                .with_hint("give the password itself or a SCRAM-SHA-256 verifier"),
        ));
    }
    Ok(Some(Verifier::from_password(text)))
}

impl Session {
    /// Runs CREATE/ALTER/DROP ROLE, GRANT and REVOKE: checks them against the roles as this
    /// transaction sees them, then writes the change on every node.
    pub(crate) async fn role_command(&mut self, command: &RoleCommand) -> Result<(), ProxyError> {
        let catalog = self.read_catalog_here().await?;
        let config = self.proxy.config_users();
        let superuser = self.proxy.is_superuser(&self.user);
        let exists =
            |name: &str| config.verifier(name).is_some() || catalog.roles.contains_key(name);
        let configured = |name: &str| -> Result<(), ProxyError> {
            if config.verifier(name).is_some() {
                return Err(ProxyError::Db(
                    DbError::new(
                        "0A000",
                        format!("role \"{name}\" is defined in the configuration file"),
                    )
                    .with_hint("change it in the [[users]] section and reload (SIGHUP)"),
                ));
            }
            Ok(())
        };
        let mut writes: Vec<Execute> = Vec::new();
        match command {
            RoleCommand::Create {
                name,
                user,
                options,
                in_roles,
            } => {
                if !superuser {
                    return Err(superuser_only("create role"));
                }
                if name == PUBLIC || name.starts_with("pg_") {
                    return Err(sql_error(
                        "42939",
                        format!("role name \"{name}\" is reserved"),
                    ));
                }
                if exists(name) {
                    return Err(sql_error(
                        "42710",
                        format!("role \"{name}\" already exists"),
                    ));
                }
                let mut role = Role {
                    verifier: None,
                    superuser: false,
                    login: *user,
                };
                apply_options(&mut role, options)?;
                writes.push(role_write(INSERT_ROLE, name, &role));
                for parent in in_roles {
                    if !exists(parent) {
                        return Err(not_exists(parent));
                    }
                    writes.push(text_params(INSERT_MEMBER, &[parent, name]));
                }
            }
            RoleCommand::Alter { name, options } => {
                let own_password = name == &self.user
                    && options.iter().all(|o| matches!(o, RoleOption::Password(_)));
                if !superuser && !own_password {
                    return Err(superuser_only("alter role"));
                }
                configured(name)?;
                let mut role = catalog
                    .roles
                    .get(name)
                    .cloned()
                    .ok_or_else(|| not_exists(name))?;
                apply_options(&mut role, options)?;
                writes.push(role_write(UPDATE_ROLE, name, &role));
            }
            RoleCommand::Drop { names, if_exists } => {
                if !superuser {
                    return Err(superuser_only("drop role"));
                }
                for name in names {
                    if name == &self.user {
                        return Err(sql_error("55006", "current user cannot be dropped"));
                    }
                    configured(name)?;
                    if !catalog.roles.contains_key(name) {
                        if *if_exists {
                            self.notice_info(&format!("role \"{name}\" does not exist, skipping"));
                            continue;
                        }
                        return Err(not_exists(name));
                    }
                    let owned = catalog.owned_by(name);
                    if !owned.is_empty() {
                        return Err(ProxyError::Db(
                            DbError::new(
                                "2BP01",
                                format!(
                                    "role \"{name}\" cannot be dropped because some objects \
                                     depend on it"
                                ),
                            )
                            .with_detail(format!("owner of table {}", owned.join(", "))),
                        ));
                    }
                    writes.push(text_params(DELETE_ROLE, &[name]));
                    writes.push(text_params(DELETE_MEMBERSHIPS, &[name]));
                    writes.push(text_params(DELETE_GRANTS_OF, &[name]));
                }
            }
            RoleCommand::Membership {
                grant,
                roles,
                members,
            } => {
                if !superuser {
                    return Err(superuser_only(if *grant {
                        "grant role"
                    } else {
                        "revoke role"
                    }));
                }
                for name in roles.iter().chain(members) {
                    if !exists(name) {
                        return Err(not_exists(name));
                    }
                }
                for role in roles {
                    for member in members {
                        if *grant {
                            if catalog.contains(role, member) {
                                return Err(sql_error(
                                    "0LP01",
                                    format!("role \"{member}\" is a member of role \"{role}\""),
                                ));
                            }
                            writes.push(text_params(INSERT_MEMBER, &[role, member]));
                        } else {
                            writes.push(text_params(DELETE_MEMBER, &[role, member]));
                        }
                    }
                }
            }
            RoleCommand::Privileges {
                grant,
                privileges,
                target,
                grantees,
            } => {
                for grantee in grantees {
                    if grantee != PUBLIC && !exists(grantee) {
                        return Err(not_exists(grantee));
                    }
                }
                let objects = match target {
                    GrantTarget::Schema | GrantTarget::AllTables if !superuser => {
                        return Err(sql_error(
                            "42501",
                            "permission denied: only a superuser may grant on the schema or on \
                             all tables",
                        ));
                    }
                    GrantTarget::Schema => vec![Object::Schema],
                    GrantTarget::AllTables => self
                        .rows_here(Execute::simple(ALL_TABLES))
                        .await?
                        .into_iter()
                        .filter_map(|row| row.into_iter().next().flatten())
                        .filter(|t| !is_reserved(t))
                        .map(Object::Table)
                        .collect(),
                    GrantTarget::Tables(tables) => {
                        let mut objects = Vec::new();
                        for table in tables {
                            if is_reserved(table) {
                                return Err(sql_error(
                                    "42501",
                                    format!("permission denied for table {table}"),
                                ));
                            }
                            if !superuser
                                && catalog.owners.get(table).is_none_or(|o| *o != self.user)
                            {
                                return Err(sql_error(
                                    "42501",
                                    format!("permission denied for table {table}"),
                                ));
                            }
                            if self.missing(table).await? {
                                return Err(sql_error(
                                    "42P01",
                                    format!("relation \"{table}\" does not exist"),
                                ));
                            }
                            objects.push(Object::Table(table.clone()));
                        }
                        objects
                    }
                };
                let sql = if *grant { INSERT_GRANT } else { DELETE_GRANT };
                for grantee in grantees {
                    for object in &objects {
                        for privilege in privileges {
                            writes.push(grant_write(sql, grantee, object, *privilege));
                        }
                    }
                }
            }
            RoleCommand::Owner {
                name,
                owner,
                if_exists,
                ..
            } => {
                let owner = match owner.as_str() {
                    "current_user" | "current_role" | "session_user" => self.user.clone(),
                    other => other.to_owned(),
                };
                if !exists(&owner) {
                    return Err(not_exists(&owner));
                }
                if is_reserved(name) {
                    return Err(sql_error("42501", format!("must be owner of table {name}")));
                }
                if !self.missing(name).await? {
                    if !superuser {
                        // As in Postgres: the owner's members may give the table away, to a
                        // role they belong to.
                        let roles = catalog.effective_roles(&self.user);
                        if catalog.owners.get(name).is_none_or(|o| !roles.contains(o)) {
                            return Err(sql_error(
                                "42501",
                                format!("must be owner of table {name}"),
                            ));
                        }
                        if !roles.contains(&owner) {
                            return Err(sql_error(
                                "42501",
                                format!("must be able to SET ROLE \"{owner}\""),
                            ));
                        }
                    }
                    writes.push(text_params(DELETE_OWNER, &[name]));
                    writes.push(text_params(INSERT_OWNER, &[name, &owner]));
                } else if !self.is_sequence(name).await? {
                    if !*if_exists {
                        return Err(sql_error(
                            "42P01",
                            format!("relation \"{name}\" does not exist"),
                        ));
                    }
                    self.notice_info(&format!("relation \"{name}\" does not exist, skipping"));
                }
                // A sequence has no owner of its own here: the proxies keep it, or a node
                // does for a cluster of one PostgreSQL node.
            }
        }
        self.write_everywhere(&writes).await?;
        self.access.changed = true;
        backend::command_complete(&mut self.conn.out, command.tag());
        Ok(())
    }

    /// Checks a statement against the user's privileges before it runs; for DDL, returns what
    /// to record once it succeeded. Superusers skip the check (and the parse, but for DDL).
    pub(crate) async fn authorize(
        &mut self,
        sql: &str,
        plan: &mycelium_router::Plan,
    ) -> Result<Option<DdlFollowUp>, ProxyError> {
        use mycelium_router::{CopyDirection, CopySourceKind, Plan, SettingsPlan};
        let superuser = self.proxy.is_superuser(&self.user);
        let access = match plan {
            Plan::Forward { ddl } if superuser && !ddl => return Ok(None),
            Plan::Settings(SettingsPlan::Substitute(_)) if superuser => return Ok(None),
            Plan::Forward { .. } | Plan::Settings(SettingsPlan::Substitute(_)) => {
                self.proxy.table_access(sql)
            }
            Plan::Copy(_) if superuser => return Ok(None),
            Plan::Copy(copy) => match &copy.source {
                CopySourceKind::Table(table) => {
                    let read = self.proxy.table_access(&format!("SELECT * FROM {table}"));
                    let mut access = match read.as_ref() {
                        Ok(access) => access.clone(),
                        Err(e) => return Err(e.clone().into()),
                    };
                    if copy.direction == CopyDirection::FromStdin {
                        for (_, privilege) in &mut access.uses {
                            *privilege = Privilege::Insert;
                        }
                    }
                    std::sync::Arc::new(Ok(access))
                }
                CopySourceKind::Query(query) => self.proxy.table_access(query),
            },
            _ => return Ok(None),
        };
        let access = match access.as_ref() {
            Ok(access) => access,
            // What does not parse here is the node's to report, for superusers; others may
            // not run what cannot be checked.
            Err(_) if superuser => return Ok(None),
            Err(e) => return Err(e.clone().into()),
        };
        if !superuser {
            self.proxy
                .catalog()
                .check(&self.user, access, &self.access.owned_here)?;
        }
        if access.creates.is_empty() && access.drops.is_empty() {
            return Ok(None);
        }
        // `CREATE TABLE IF NOT EXISTS` of a table someone else has must not make this user
        // its owner: only tables that are new get one.
        let mut creates = Vec::new();
        for table in &access.creates {
            if self.missing(table).await? {
                creates.push(table.clone());
            }
        }
        Ok(Some(DdlFollowUp {
            creates,
            drops: access.drops.clone(),
        }))
    }

    /// Records the owner of tables a statement created and forgets the grants of those it
    /// dropped.
    pub(crate) async fn after_ddl(
        &mut self,
        follow_up: Option<DdlFollowUp>,
    ) -> Result<(), ProxyError> {
        let Some(follow_up) = follow_up else {
            return Ok(());
        };
        let mut writes = Vec::new();
        for table in &follow_up.drops {
            writes.push(text_params(DELETE_OWNER, &[table]));
            writes.push(text_params(DELETE_GRANTS_ON, &[table]));
        }
        for table in &follow_up.creates {
            writes.push(text_params(INSERT_OWNER, &[table, &self.user]));
        }
        if writes.is_empty() {
            return Ok(());
        }
        self.write_everywhere(&writes).await?;
        self.access.changed = true;
        self.access.owned_here.extend(follow_up.creates);
        Ok(())
    }

    /// Reads the stored roles again once the session's changes committed (or rolled back).
    pub(crate) async fn refresh_access(&mut self) {
        if !self.access.changed || self.status != TxnStatus::Idle {
            return;
        }
        self.access = SessionAccess::default();
        if let Err(e) = self.proxy.load_access().await {
            tracing::warn!(error = %e, "cannot read roles and grants back from the nodes");
        }
    }

    /// The stored roles as the open transaction (if any) sees them, on the first node.
    async fn read_catalog_here(&mut self) -> Result<Catalog, ProxyError> {
        self.ensure_node_transaction(0).await?;
        Ok(read_catalog(self.node(0).await?.as_mut()).await?)
    }

    async fn rows_here(
        &mut self,
        request: Execute,
    ) -> Result<Vec<Vec<Option<String>>>, ProxyError> {
        self.ensure_node_transaction(0).await?;
        Ok(run(self.node(0).await?.as_mut(), request).await?)
    }

    /// Whether no table or view `table` exists (as the open transaction sees it).
    async fn missing(&mut self, table: &str) -> Result<bool, ProxyError> {
        Ok(self
            .rows_here(text_params(TABLE_EXISTS, &[table]))
            .await?
            .is_empty())
    }

    /// Whether `name` is a sequence: one the proxies keep, or one a node has.
    async fn is_sequence(&mut self, name: &str) -> Result<bool, ProxyError> {
        let on_node = !self
            .rows_here(text_params(SEQUENCE_EXISTS, &[name]))
            .await?
            .is_empty();
        if on_node {
            return Ok(true);
        }
        let mut home = self.home_session().await?;
        let kept = crate::named_sequences::kept(home.session(), name).await;
        self.give_back(home);
        kept
    }

    /// Runs `writes` on every node: inside the client's transaction when one is open, else in
    /// an implicit one, which commits on every node or none (two-phase commit).
    async fn write_everywhere(&mut self, writes: &[Execute]) -> Result<(), ProxyError> {
        if writes.is_empty() {
            return Ok(());
        }
        let implicit = self.status == TxnStatus::Idle;
        if implicit {
            self.begin_transaction("BEGIN")?;
        }
        let mut result = Ok(());
        for node in 0..self.proxy.cluster.nodes.len() {
            let step = async {
                self.ensure_node_transaction(node).await?;
                self.track(node, true)?;
                for write in writes {
                    run(self.node(node).await?.as_mut(), write.clone()).await?;
                }
                Ok::<(), ProxyError>(())
            }
            .await;
            if let Err(e) = step {
                result = Err(e);
                break;
            }
        }
        if implicit {
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            let finished = self.finish_transaction(end).await;
            if result.is_ok() {
                result = finished;
            }
        }
        result
    }

    fn notice_info(&mut self, message: &str) {
        backend::notice_response(
            &mut self.conn.out,
            &backend::Report {
                severity: "NOTICE",
                code: "00000",
                message,
                detail: None,
                hint: None,
            },
        );
    }
}

fn apply_options(role: &mut Role, options: &[RoleOption]) -> Result<(), ProxyError> {
    for option in options {
        match option {
            RoleOption::Password(Some(secret)) => role.verifier = verifier_from_sql(&secret.0)?,
            RoleOption::Password(None) => role.verifier = None,
            RoleOption::Superuser(on) => role.superuser = *on,
            RoleOption::Login(on) => role.login = *on,
        }
    }
    Ok(())
}
