//! The router: SQL text in, a plan out. Pure: no I/O, no clocks, no global state.
//!
//! The proxy asks the router what each statement is before it runs it: whether it is
//! transaction control, a session command the proxy answers itself (SET/SHOW/RESET), a COPY
//! that needs the copy sub-protocol, or a statement to forward to a node. Plans are cached by
//! statement text, so each distinct text is looked at once.

mod access;
mod advisory;
mod cache;
mod calls;
mod classify;
mod copy;
mod create_as;
mod hash;
mod insert_fill;
mod insert_split;
mod named_sequences;
mod options;
mod placement;
mod policy;
mod roles;
mod route;
mod scatter;
mod scope;
mod session;
mod settings;
mod split;
mod unique;

pub use access::{TableAccess, table_access};
pub use advisory::{AdvisoryCall, AdvisoryColumn, AdvisoryKey, KeyArg};
pub use cache::PlanCache;
pub use classify::{Plan, TxnControl, classify, statement_kind};
pub use copy::{CopyDirection, CopyFormat, CopyPlan, CopySourceKind};
pub use create_as::{CreateTableAs, create_table_as};
pub use hash::{KeyValue, key_hash, stable_hash};
pub use insert_fill::{
    ColumnFill, InsertSelectParts, defaulted_rows, fill_defaults, insert_select_parts,
    insert_values_table,
};
pub use insert_split::{InsertPart, insert_without_columns, name_insert_columns, split_insert};
pub use named_sequences::{
    SequenceArg, SequenceCall, SequenceChanges, SequenceColumn, SequenceCommand,
    SequenceDefinition, ValuesCall, default_sequence, nextval_names, replace_values_sequence_calls,
    sequence_key, values_sequence_calls,
};
pub use options::{PolicyOptions, apply_options, policy_options, policy_to_options};
pub use placement::{
    FIRST_EPOCH, NodeInfo, Promotion, Replica, ShardPlacement, TablePlacement, copies,
    merge_promotions, place, placement_group,
};
pub use policy::{NodeType, PolicyDefaults, PolicyError, ReplicaRole, TablePolicy};
pub use roles::{GrantTarget, Privilege, RoleCommand, RoleOption, Secret, is_role_statement};
pub use route::{
    KeyExpr, PolicySource, Route, ShardChoice, analyzed_statement, route, statement_tables,
    table_name,
};
pub use scatter::{
    ArithOp, Combine, CompareOp, Constant, Finish, Having, HavingOperand, MergeSpec, SortColumn,
    SortKey, merge_spec,
};
pub use scope::{SHARD_FUNCTION, ShardScope, scope_statement, shard_function};
pub use session::{SessionCommand, SetValue, transaction_modes};
pub use settings::{
    SettingArg, SettingsCall, SettingsColumn, SettingsPlan, Substitution, parse_bool,
};
pub use split::split_statements;
pub use unique::{ForeignKey, Renames, UniqueKeys, foreign_keys, renames, unique_keys};

/// Why a statement cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouterError {
    /// The statement is not valid SQL; the message is the parser's.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// Valid SQL that Mycelium does not run; the message says what and what to do instead.
    #[error("{0}")]
    Unsupported(String),
    /// A value Postgres would refuse as an invalid parameter (22023).
    #[error("{0}")]
    InvalidParameter(String),
}

#[cfg(test)]
mod access_tests;
#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod placement_tests;
#[cfg(test)]
mod route_tests;
#[cfg(test)]
mod scatter_tests;
#[cfg(test)]
mod scope_tests;
#[cfg(test)]
mod settings_tests;
#[cfg(test)]
mod tests;
