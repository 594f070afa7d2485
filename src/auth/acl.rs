//! `--acl FILE`: who may do what in which repository.
//!
//! One rule per line, `USER LEVEL REPOSITORY`; `#` starts a comment:
//!
//! ```text
//! admin    full    *            # the admin may prune everything
//! *        append  /$user/*     # every user may back up to their own repositories
//! monitor  read    /alice/laptop
//! ```
//!
//! - USER is a user name or `*` (anyone authenticated).
//! - LEVEL is `read` (list and download, and take locks, which restic needs
//!   even to restore), `append` (also create repositories and upload; delete
//!   only locks, like `--append-only`) or `full` (also delete).
//! - REPOSITORY is `*` (every repository), `/path` (exactly that one; `/` is the
//!   root repository) or `/path/*` (that one and every one below it).
//!   `$user` stands for the requesting user's name.
//!
//! The first rule that matches the user and the repository decides. No
//! matching rule: refused like a wrong password (401), so the answer does not
//! tell whether the repository exists. A level too low for the request: 403.

use std::fmt;

use crate::repo::RepoPath;

/// What a rule allows; ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Access {
    Read,
    Append,
    Full,
}

impl Access {
    fn parse(text: &str) -> Option<Access> {
        match text {
            "read" => Some(Access::Read),
            "append" => Some(Access::Append),
            "full" => Some(Access::Full),
            _ => None,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Append => "append",
            Access::Full => "full",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum UserPattern {
    Anyone,
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum RepoPattern {
    Any,
    /// Segments, each possibly `$user`.
    Exactly(Vec<String>),
    AndBelow(Vec<String>),
}

impl RepoPattern {
    fn parse(text: &str) -> Option<RepoPattern> {
        if text == "*" {
            return Some(RepoPattern::Any);
        }
        let path = text.strip_prefix('/')?;
        let (path, below) = match path.strip_suffix("/*") {
            Some(p) => (p, true),
            None if path == "*" => ("", true),
            None => (path, false),
        };
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if segments
            .iter()
            .any(|s| s == "." || s == ".." || s.contains('*'))
        {
            return None;
        }
        Some(if below {
            RepoPattern::AndBelow(segments)
        } else {
            RepoPattern::Exactly(segments)
        })
    }

    fn matches(&self, user: &str, repo: &RepoPath) -> bool {
        let wanted = |pattern: &[String]| -> Vec<String> {
            pattern.iter().map(|s| s.replace("$user", user)).collect()
        };
        let actual: Vec<&str> = repo.segments().collect();
        match self {
            RepoPattern::Any => true,
            RepoPattern::Exactly(p) => wanted(p) == actual,
            RepoPattern::AndBelow(p) => {
                let p = wanted(p);
                actual.len() >= p.len() && actual.iter().zip(&p).all(|(a, b)| a == b)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    user: UserPattern,
    access: Access,
    repo: RepoPattern,
}

/// The parsed rules, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Acl {
    rules: Vec<Rule>,
}

impl Acl {
    /// Parses the file; bad lines are skipped and reported as warnings.
    pub(crate) fn parse(text: &str) -> (Acl, Vec<String>) {
        let expected = "`USER read|append|full REPOSITORY` (e.g. `alice append /alice/*`)";
        let (rules, warnings) = crate::runtime::reload::parse_rules(text, expected, |fields| {
            let [user, level, repo] = fields else {
                return None;
            };
            let user = match *user {
                "*" => UserPattern::Anyone,
                name => UserPattern::Named(name.to_string()),
            };
            Access::parse(level)
                .zip(RepoPattern::parse(repo))
                .map(|(access, repo)| Rule { user, access, repo })
        });
        (Acl { rules }, warnings)
    }

    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// The access `user` has to `repo`, from the first matching rule.
    pub(crate) fn access(&self, user: &str, repo: &RepoPath) -> Option<Access> {
        self.rules
            .iter()
            .find(|rule| rule.user.matches(user) && rule.repo.matches(user, repo))
            .map(|rule| rule.access)
    }

    /// Whether a rule gives `user` every repository. Every level includes
    /// reading, so whatever rule comes first for a repository, the user may
    /// read them all: an administrator, for the status page.
    pub(crate) fn covers_everything(&self, user: &str) -> bool {
        self.rules.iter().any(|rule| {
            rule.user.matches(user)
                && match &rule.repo {
                    RepoPattern::Any => true,
                    RepoPattern::AndBelow(p) => p.is_empty(),
                    RepoPattern::Exactly(_) => false,
                }
        })
    }
}

impl UserPattern {
    fn matches(&self, user: &str) -> bool {
        match self {
            UserPattern::Anyone => true,
            UserPattern::Named(name) => name == user,
        }
    }
}

/// The `--acl` file, reloaded while the server runs.
impl crate::runtime::reload::Reloadable for Acl {
    const WHAT: &'static str = "acl";
    type Source = std::path::PathBuf;
    type Error = std::io::Error;

    fn load(source: &std::path::PathBuf) -> std::io::Result<crate::runtime::reload::Loaded<Acl>> {
        crate::runtime::reload::load_rules(source, Acl::parse)
    }

    fn summary(&self) -> String {
        format!("{} rule(s)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> RepoPath {
        RepoPath::from_label(path.trim_matches('/')).unwrap()
    }

    #[test]
    fn first_matching_rule_decides() {
        let (acl, warnings) = Acl::parse(
            "# comment\n\
             admin full *\n\
             monitor read /alice/laptop   # one repository\n\
             * append /$user/*\n\
             bob read /\n\
             broken line\n\
             carol write /carol\n\
             dave full /../x\n",
        );
        assert_eq!(acl.len(), 4);
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].starts_with("line 6"));
        assert_eq!(acl.access("admin", &repo("/anything/")), Some(Access::Full));
        assert_eq!(acl.access("admin", &repo("/")), Some(Access::Full));
        assert_eq!(
            acl.access("monitor", &repo("/alice/laptop/")),
            Some(Access::Read)
        );
        assert_eq!(acl.access("monitor", &repo("/alice/")), None);
        assert_eq!(acl.access("alice", &repo("/alice/")), Some(Access::Append));
        assert_eq!(
            acl.access("alice", &repo("/alice/laptop/")),
            Some(Access::Append)
        );
        assert_eq!(acl.access("alice", &repo("/bob/")), None);
        assert_eq!(acl.access("alice", &repo("/")), None);
        assert_eq!(acl.access("bob", &repo("/bob/x/")), Some(Access::Append));
        assert_eq!(acl.access("bob", &repo("/")), Some(Access::Read));
        assert!(Access::Read < Access::Append && Access::Append < Access::Full);
    }
}
