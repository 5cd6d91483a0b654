//! Bearer tokens for the admin API: named, so the audit log records who without the secret.

use std::path::Path;

/// Shortest secret accepted: guessing must stay out of reach.
pub const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: crate::files::FileError,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error("MERIDIAN_ADMIN_TOKEN is shorter than {MIN_SECRET_LEN} characters")]
    ShortEnv,
}

/// The tokens that may call the admin API.
#[derive(Clone, Default)]
pub struct Tokens(Vec<(String, Vec<u8>)>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: secrets never reach a log.
        let names: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_tuple("Tokens").field(&names).finish()
    }
}

impl Tokens {
    /// The secret of the first token, to call the API with.
    pub fn first_secret(&self) -> Option<String> {
        self.0
            .first()
            .map(|(_, s)| String::from_utf8_lossy(s).into_owned())
    }

    /// Tokens from a file of `name:secret` lines (`#` comments), plus `env` (the value of
    /// MERIDIAN_ADMIN_TOKEN, named "env").
    pub fn load(file: Option<&Path>, env: Option<String>) -> Result<Tokens, TokenError> {
        let mut tokens = Vec::new();
        if let Some(path) = file {
            let display = path.display().to_string();
            let text = crate::files::read_regular_text(path, crate::files::SMALL_FILE).map_err(
                |source| TokenError::Read {
                    path: display.clone(),
                    source,
                },
            )?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let err = |message: &str| TokenError::Line {
                    path: display.clone(),
                    line: i + 1,
                    message: message.into(),
                };
                let (name, secret) = line
                    .split_once(':')
                    .ok_or_else(|| err("expected name:secret"))?;
                let (name, secret) = (name.trim(), secret.trim());
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
                {
                    return Err(err("token name: use letters, digits, '-', '_', '.', '@'"));
                }
                if secret.len() < MIN_SECRET_LEN {
                    return Err(err("secret is shorter than 16 characters"));
                }
                tokens.push((name.to_string(), secret.as_bytes().to_vec()));
            }
        }
        if let Some(secret) = env.filter(|s| !s.is_empty()) {
            if secret.len() < MIN_SECRET_LEN {
                return Err(TokenError::ShortEnv);
            }
            tokens.push(("env".into(), secret.into_bytes()));
        }
        Ok(Tokens(tokens))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The name of the token `presented` matches. Every token is compared in full, so the
    /// time taken does not tell how much of a secret was right.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for (name, secret) in &self.0 {
            if constant_time_eq(presented.as_bytes(), secret) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Equality in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_load_from_file_and_env_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# ops\nalice: 0123456789abcdef0123\n\nbob:fedcba9876543210fedc\n",
        )
        .unwrap();
        let t = Tokens::load(Some(&path), Some("envsecret-0123456789".into())).unwrap();
        assert_eq!(t.check("0123456789abcdef0123"), Some("alice"));
        assert_eq!(t.check("fedcba9876543210fedc"), Some("bob"));
        assert_eq!(t.check("envsecret-0123456789"), Some("env"));
        assert_eq!(t.check("0123456789abcdef012"), None);
        assert_eq!(t.check(""), None);
        assert!(
            !format!("{t:?}").contains("0123456789abcdef"),
            "secrets never debug-print"
        );
    }

    #[test]
    fn bad_token_files_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "alice:0123456789abcdef0123\nbob:short\n").unwrap();
        let err = Tokens::load(Some(&path), None).err().unwrap().to_string();
        assert!(
            err.ends_with("tokens:2: secret is shorter than 16 characters"),
            "{err}"
        );
        std::fs::write(&path, "no separator here\n").unwrap();
        let err = Tokens::load(Some(&path), None).err().unwrap().to_string();
        assert!(err.contains(":1: expected name:secret"), "{err}");
        assert!(Tokens::load(None, Some("short".into())).is_err());
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
