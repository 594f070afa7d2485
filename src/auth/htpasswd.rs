//! The `.htpasswd` file: parsing, checking a password, writing entries.
//!
//! Accepted hashes: bcrypt (`$2a$`, `$2b$`, `$2y$`), `{SHA}` (base64 SHA-1)
//! and Apache's `$apr1$`. A line with another format, or with a user name
//! outside `[A-Za-z0-9_.@-]`, is skipped with a warning naming the line.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::apr1;

/// Longest user name accepted.
pub(crate) const MAX_USERNAME_BYTES: usize = 64;

/// bcrypt cost for new entries: htpasswd's `-B` default, about 80 ms on a
/// Raspberry Pi 4 core; verified once per minute per client thanks to the cache.
pub(crate) const BCRYPT_COST: u32 = 10;

/// A stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PasswordHash {
    Bcrypt(String),
    Sha1([u8; 20]),
    Apr1(String),
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print hashes into logs.
        f.write_str(match self {
            PasswordHash::Bcrypt(_) => "bcrypt",
            PasswordHash::Sha1(_) => "{SHA}",
            PasswordHash::Apr1(_) => "apr1",
        })
    }
}

impl PasswordHash {
    fn parse(text: &str) -> Option<PasswordHash> {
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            return Some(PasswordHash::Bcrypt(text.to_string()));
        }
        if text.starts_with("$apr1$") && text.matches('$').count() == 3 {
            return Some(PasswordHash::Apr1(text.to_string()));
        }
        if let Some(b64) = text.strip_prefix("{SHA}") {
            let bytes = BASE64.decode(b64).ok()?;
            return Some(PasswordHash::Sha1(bytes.try_into().ok()?));
        }
        None
    }

    /// Whether `password` matches. bcrypt is slow on purpose: call this off
    /// the event loop.
    pub(crate) fn verify(&self, password: &str) -> bool {
        match self {
            PasswordHash::Bcrypt(stored) => bcrypt::verify(password, stored).unwrap_or(false),
            PasswordHash::Apr1(stored) => apr1::verify(password.as_bytes(), stored),
            PasswordHash::Sha1(stored) => {
                let digest = ring::digest::digest(
                    &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                    password.as_bytes(),
                );
                super::compare::constant_time_eq(digest.as_ref(), stored)
            }
        }
    }

    /// A new bcrypt entry for `password`.
    pub(crate) fn new_bcrypt(password: &str) -> Result<PasswordHash, bcrypt::BcryptError> {
        bcrypt::hash(password, BCRYPT_COST).map(PasswordHash::Bcrypt)
    }

    fn to_line_text(&self) -> String {
        match self {
            PasswordHash::Bcrypt(s) | PasswordHash::Apr1(s) => s.clone(),
            PasswordHash::Sha1(bytes) => format!("{{SHA}}{}", BASE64.encode(bytes)),
        }
    }
}

/// SECURITY: user names become repository paths under `--private-repos`, so
/// only a plain set of characters is allowed: no `/`, no dot-only names.
pub(crate) fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_USERNAME_BYTES
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
}

/// A line that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Warning {
    pub(crate) line: usize,
    pub(crate) user: String,
    pub(crate) reason: &'static str,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: user {:?}: {}",
            self.line, self.user, self.reason
        )
    }
}

/// The users of one htpasswd file, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Users {
    entries: BTreeMap<String, PasswordHash>,
}

impl Users {
    /// Parses the file's text; bad lines become warnings, never errors.
    pub(crate) fn parse(text: &str) -> (Users, Vec<Warning>) {
        let mut users = Users::default();
        let mut warnings = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let warn = |user: &str, reason| Warning {
                line: line_no,
                user: user.chars().take(MAX_USERNAME_BYTES).collect(),
                reason,
            };
            let Some((user, hash)) = line.split_once(':') else {
                warnings.push(warn("", "no ':' between user and hash; line skipped"));
                continue;
            };
            if !valid_username(user) {
                warnings.push(warn(
                    user,
                    "user names may hold only letters, digits, '_', '-', '.', '@'; user skipped",
                ));
                continue;
            }
            let Some(hash) = PasswordHash::parse(hash.trim()) else {
                warnings.push(warn(
                    user,
                    "unknown hash format (use bcrypt, $apr1$ or {SHA}); user skipped",
                ));
                continue;
            };
            if users.entries.insert(user.to_string(), hash).is_some() {
                warnings.push(warn(user, "listed twice; the last line wins"));
            }
        }
        (users, warnings)
    }

    pub(crate) fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.entries.get(user)
    }

    /// Some user's hash: what an unknown user's password is checked
    /// against, so that unknown users take as long as wrong passwords.
    pub(crate) fn any(&self) -> Option<&PasswordHash> {
        self.entries.values().next()
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The file's text, one `user:hash` line each.
    #[cfg(test)]
    fn to_text(&self) -> String {
        self.entries
            .iter()
            .map(|(user, hash)| format!("{user}:{}\n", hash.to_line_text()))
            .collect()
    }
}

/// `text` with `user`'s line replaced by (or, if new, followed by) one for
/// `hash`. Every other line, comments and lines we cannot parse included, is
/// kept as it was: an admin's file is theirs.
pub(crate) fn with_user(text: &str, user: &str, hash: &PasswordHash) -> String {
    let (mut out, _) = without_user(text, user);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("{user}:{}\n", hash.to_line_text()));
    out
}

/// `text` without `user`'s lines, and whether there were any.
pub(crate) fn without_user(text: &str, user: &str) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut found = false;
    for line in text.split_inclusive('\n') {
        if line
            .trim()
            .split_once(':')
            .is_some_and(|(name, _)| name == user)
        {
            found = true;
        } else {
            out.push_str(line);
        }
    }
    (out, found)
}

/// The htpasswd file, reloaded while the server runs.
impl crate::runtime::reload::Reloadable for Users {
    const WHAT: &'static str = "htpasswd";
    type Source = std::path::PathBuf;
    type Error = std::io::Error;

    fn load(source: &std::path::PathBuf) -> std::io::Result<crate::runtime::reload::Loaded<Users>> {
        let text = std::fs::read_to_string(source)?;
        let (value, warnings) = Users::parse(&text);
        Ok(crate::runtime::reload::Loaded {
            value,
            warnings: warnings.iter().map(ToString::to_string).collect(),
        })
    }

    fn summary(&self) -> String {
        format!("{} user(s)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_supported_format_and_warns_about_the_rest() {
        let bcrypt = bcrypt::hash("b-pass", 4).unwrap();
        let text = format!(
            "# comment\n\
             alice:{bcrypt}\n\
             bob:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n\
             carol:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\
             dave:plaintext\n\
             ../evil:$apr1$saltsalt$yAAkm4libquA.ZWLHbSBq/\n\
             a/b:{bcrypt}\n\
             no-colon-here\n"
        );
        let (users, warnings) = Users::parse(&text);
        assert_eq!(users.names().collect::<Vec<_>>(), ["alice", "bob", "carol"]);
        assert!(users.get("alice").unwrap().verify("b-pass"));
        assert!(!users.get("alice").unwrap().verify("wrong"));
        assert!(users.get("bob").unwrap().verify("password"));
        assert!(users.get("carol").unwrap().verify("password"));
        assert!(!users.get("carol").unwrap().verify("Password"));
        let lines: Vec<usize> = warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, [5, 6, 7, 8]);
        assert!(warnings[0].to_string().contains("dave"));
        assert!(warnings[0].reason.contains("unknown hash format"));
    }

    #[test]
    fn usernames_cannot_name_paths() {
        for good in ["alice", "bob.smith", "u_1", "me@home", "a-b"] {
            assert!(valid_username(good), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a b", "a:b", "ä"] {
            assert!(!valid_username(bad), "{bad}");
        }
    }

    #[test]
    fn edits_keep_other_lines() {
        let text = "# admins\nalice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nodd line\nbob:x";
        let hash = PasswordHash::Sha1([0; 20]);
        let edited = with_user(text, "alice", &hash);
        assert_eq!(
            edited,
            "# admins\nodd line\nbob:x\nalice:{SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        );
        let (removed, found) = without_user(&edited, "bob");
        assert!(found);
        assert_eq!(
            removed,
            "# admins\nodd line\nalice:{SHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
        );
        assert!(!without_user(&removed, "carol").1);
    }

    #[test]
    fn round_trips_through_text() {
        let (users, _) = Users::parse("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
        let (again, warnings) = Users::parse(&users.to_text());
        assert!(warnings.is_empty());
        assert_eq!(again, users);
    }
}
