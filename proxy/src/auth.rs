//! Users and SCRAM-SHA-256 verifiers. Passwords never outlive configuration loading: a
//! `password` from the config (or from `CREATE ROLE ... PASSWORD`) is turned into a verifier
//! at once, as Postgres stores them.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mycelium_config::UserConfig;
use pgwire::api::auth::sasl::scram::{ScramSecret, gen_salted_password};

/// Iterations for verifiers made from plain passwords (Postgres's default).
const ITERATIONS: usize = 4096;

/// What the server keeps of a password: the SCRAM verifier parts.
#[derive(Clone)]
pub struct Verifier {
    salt: Vec<u8>,
    iterations: usize,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Derives a verifier from a password with a fresh random salt.
    pub fn from_password(password: &str) -> Verifier {
        let salt: [u8; 16] = rand::random();
        Verifier::from_password_and_salt(password, &salt, ITERATIONS)
    }

    fn from_password_and_salt(password: &str, salt: &[u8], iterations: usize) -> Verifier {
        let salted = gen_salted_password(password, salt, iterations);
        match ScramSecret::verifier_from_salted_password(salt.to_vec(), salted, iterations) {
            ScramSecret::Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            } => Verifier {
                salt,
                iterations,
                stored_key,
                server_key,
            },
            ScramSecret::SaltedPassword { salt, .. } => Verifier {
                salt,
                iterations,
                stored_key: Vec::new(),
                server_key: Vec::new(),
            },
        }
    }

    /// A verifier no password matches, used for unknown users so the exchange looks the same.
    pub fn impossible() -> Verifier {
        let salt: [u8; 16] = rand::random();
        Verifier {
            salt: salt.to_vec(),
            iterations: ITERATIONS,
            stored_key: vec![0; 32],
            server_key: vec![0; 32],
        }
    }

    /// Parses Postgres's text form: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        Some(Verifier {
            salt: STANDARD.decode(salt).ok()?,
            iterations: iterations.parse().ok().filter(|&n| n > 0)?,
            stored_key: STANDARD.decode(stored_key).ok()?,
            server_key: STANDARD.decode(server_key).ok()?,
        })
    }

    /// The text form, as `mycelium passwd` prints and the config file takes.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(&self.stored_key),
            STANDARD.encode(&self.server_key)
        )
    }

    pub fn secret(&self) -> ScramSecret {
        ScramSecret::Verifier {
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        }
    }
}

/// The users a proxy accepts.
#[derive(Debug, Clone, Default)]
pub struct Users {
    verifiers: HashMap<String, Verifier>,
}

/// A user entry that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("user `{user}`: scram_verifier is not a valid SCRAM-SHA-256 verifier")]
pub struct BadVerifier {
    pub user: String,
}

impl Users {
    pub fn from_config(users: &[UserConfig]) -> Result<Users, BadVerifier> {
        let mut verifiers = HashMap::new();
        for user in users {
            let verifier = match (&user.scram_verifier, &user.password) {
                (Some(text), _) => Verifier::parse(text).ok_or_else(|| BadVerifier {
                    user: user.name.clone(),
                })?,
                (None, Some(password)) => Verifier::from_password(password),
                (None, None) => {
                    return Err(BadVerifier {
                        user: user.name.clone(),
                    });
                }
            };
            verifiers.insert(user.name.clone(), verifier);
        }
        Ok(Users { verifiers })
    }

    pub fn verifier(&self, user: &str) -> Option<&Verifier> {
        self.verifiers.get(user)
    }

    /// The user names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.verifiers.keys().cloned().collect();
        names.sort();
        names
    }

    /// These users (from the config file) and the roles made by SQL that may log in with a
    /// password; a config user wins over a role of the same name.
    pub(crate) fn with_roles(&self, catalog: &crate::privileges::Catalog) -> Users {
        let mut verifiers = self.verifiers.clone();
        for (name, role) in &catalog.roles {
            if let (true, Some(verifier)) = (role.login, &role.verifier) {
                verifiers
                    .entry(name.clone())
                    .or_insert_with(|| verifier.clone());
            }
        }
        Users { verifiers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_text_round_trips() {
        let verifier = Verifier::from_password("secret");
        let text = verifier.to_text();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        let parsed = Verifier::parse(&text).expect("parses");
        assert_eq!(parsed.to_text(), text);
    }

    #[test]
    fn same_password_and_salt_give_the_same_verifier() {
        let a = Verifier::from_password_and_salt("pw", b"0123456789abcdef", 4096);
        let b = Verifier::from_password_and_salt("pw", b"0123456789abcdef", 4096);
        assert_eq!(a.to_text(), b.to_text());
        let c = Verifier::from_password_and_salt("pw2", b"0123456789abcdef", 4096);
        assert_ne!(a.to_text(), c.to_text());
    }

    #[test]
    fn garbage_verifiers_are_refused() {
        for text in [
            "",
            "md5abc",
            "SCRAM-SHA-256$x:y$z:w",
            "SCRAM-SHA-256$0:AAAA$AA==:AA==",
        ] {
            assert!(Verifier::parse(text).is_none(), "{text}");
        }
    }
}
