//! Who may do what where: the one authorization decision, taken before an
//! endpoint runs (endpoints contain no access policy).
//!
//! Three flags feed one rule set:
//! - `--acl FILE`: the file's rules decide (see [`crate::auth::acl`]);
//! - `--private-repos` without an ACL: the implicit rule `* full /$user/*`;
//! - neither: everyone (authenticated, or anyone with `--no-auth`) has full access.
//!
//! `--append-only` then caps every grant at `append`.

use std::rc::Rc;

use crate::auth::acl::{Access, Acl};
use crate::repo::RepoPath;
use crate::runtime::reload::Watched;

/// The user who may read `/metrics` under `--private-repos`.
pub(crate) const METRICS_USER: &str = "metrics";

/// Where the rules come from.
pub(crate) enum Rules {
    /// Everyone has full access.
    Open,
    /// Fixed rules (`--private-repos` without `--acl`).
    Fixed(Acl),
    /// The `--acl` file, reloaded when it changes.
    File(Rc<Watched<Acl>>),
}

/// The access policy, built once at startup.
pub(crate) struct Policy {
    rules: Rules,
    append_only: bool,
    private_repos: bool,
}

/// Why a request may not go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No rule gives the user this repository: answered like bad
    /// credentials, so the answer does not tell whether it exists.
    NoGrant,
    /// A grant, but too low for the request (403).
    TooLow { granted: Access, needed: Access },
}

impl Policy {
    /// `private_repos` counts only with authentication on (as rest-server).
    pub(crate) fn new(
        acl: Option<Rc<Watched<Acl>>>,
        private_repos: bool,
        append_only: bool,
    ) -> Policy {
        let rules = match acl {
            Some(file) => Rules::File(file),
            None if private_repos => Rules::Fixed(Acl::parse("* full /$user/*").0),
            None => Rules::Open,
        };
        Policy {
            rules,
            append_only,
            private_repos,
        }
    }

    /// Decides whether `user` (None without authentication) may do what
    /// needs `needed` in `repo`.
    pub(crate) fn authorize(
        &self,
        user: Option<&str>,
        repo: &RepoPath,
        needed: Access,
    ) -> Result<(), Denied> {
        let granted = match (&self.rules, user) {
            (Rules::Open, _) | (_, None) => Some(Access::Full),
            (Rules::Fixed(acl), Some(user)) => acl.access(user, repo),
            (Rules::File(acl), Some(user)) => acl.get().access(user, repo),
        };
        let Some(mut granted) = granted else {
            return Err(Denied::NoGrant);
        };
        if self.append_only {
            granted = granted.min(Access::Append);
        }
        if granted < needed {
            return Err(Denied::TooLow { granted, needed });
        }
        Ok(())
    }

    /// Whether the status page shows `user` the whole server (every
    /// repository, the mirror, the scrub, refused logins) rather than only
    /// the repositories they may read: without authentication or rules,
    /// the user `metrics` under `--private-repos`, and, with an ACL, whoever
    /// has a rule for every repository.
    pub(crate) fn sees_everything(&self, user: Option<&str>) -> bool {
        let Some(user) = user else {
            return true;
        };
        match &self.rules {
            Rules::Open => true,
            _ if self.private_repos && user == METRICS_USER => true,
            Rules::Fixed(acl) => acl.covers_everything(user),
            Rules::File(acl) => acl.get().covers_everything(user),
        }
    }

    /// `/metrics` names every user and repository: with `--private-repos`,
    /// only the user `metrics` may read it (rest-server's rule).
    pub(crate) fn may_read_metrics(&self, user: Option<&str>) -> bool {
        !self.private_repos || user.is_none_or(|u| u == METRICS_USER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> RepoPath {
        RepoPath::from_label(path.trim_matches('/')).unwrap()
    }

    #[test]
    fn private_repos_is_the_rule_for_the_users_own_tree() {
        let policy = Policy::new(None, true, false);
        assert_eq!(
            policy.authorize(Some("alice"), &repo("/alice/"), Access::Full),
            Ok(())
        );
        assert_eq!(
            policy.authorize(Some("alice"), &repo("/alice/laptop/"), Access::Full),
            Ok(())
        );
        assert_eq!(
            policy.authorize(Some("alice"), &repo("/bob/"), Access::Read),
            Err(Denied::NoGrant)
        );
        assert_eq!(
            policy.authorize(Some("alice"), &repo("/"), Access::Read),
            Err(Denied::NoGrant)
        );
        assert!(!policy.may_read_metrics(Some("alice")));
        assert!(policy.may_read_metrics(Some(METRICS_USER)));
    }

    #[test]
    fn append_only_caps_every_grant() {
        let policy = Policy::new(None, false, true);
        assert_eq!(policy.authorize(None, &repo("/x/"), Access::Append), Ok(()));
        assert_eq!(
            policy.authorize(Some("a"), &repo("/x/"), Access::Full),
            Err(Denied::TooLow {
                granted: Access::Append,
                needed: Access::Full
            })
        );
        assert!(Policy::new(None, false, false).may_read_metrics(Some("anyone")));
    }

    #[test]
    fn the_whole_server_is_shown_to_administrators_only() {
        assert!(Policy::new(None, false, false).sees_everything(Some("anyone")));
        assert!(Policy::new(None, true, false).sees_everything(None));
        let private = Policy::new(None, true, false);
        assert!(!private.sees_everything(Some("alice")));
        assert!(private.sees_everything(Some(METRICS_USER)));
        let rules = "alice full /alice/*\nadmin read /alice\nadmin full /*\nroot append *\n";
        let acl = Rules::Fixed(Acl::parse(rules).0);
        let policy = Policy {
            rules: acl,
            append_only: false,
            private_repos: false,
        };
        assert!(!policy.sees_everything(Some("alice")));
        assert!(policy.sees_everything(Some("admin")));
        assert!(policy.sees_everything(Some("root")));
        assert!(!policy.sees_everything(Some(METRICS_USER)));
    }
}
