//! A repository's path: which repository of a data directory (or bucket
//! prefix) a request, a mirrored file or a scrubbed object belongs to.

use std::fmt;

use super::object::ObjectType;

/// How many leading segments a repository path may have (`/`, `/a`, `/a/b`), as in
/// rest-server's `MaxFolderDepth`.
pub(crate) const MAX_REPO_DEPTH: usize = 2;

/// Longest repository path segment accepted; Linux's NAME_MAX.
pub(crate) const MAX_SEGMENT_BYTES: usize = 255;

/// A repository's path below the data directory: zero to [`MAX_REPO_DEPTH`]
/// validated, percent-decoded segments. The empty path is the root repository.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RepoPath {
    segments: Vec<String>,
}

impl RepoPath {
    /// How many segments the path has.
    pub(crate) fn depth(&self) -> usize {
        self.segments.len()
    }

    /// Appends a segment that is a safe folder name (see [`check_segment`])
    /// to a path with room for it; None leaves the path as it was.
    pub(crate) fn push(&mut self, segment: String) -> Option<()> {
        if self.segments.len() >= MAX_REPO_DEPTH {
            return None;
        }
        self.segments.push(check_segment(segment)?);
        Some(())
    }

    pub(crate) fn segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }

    /// The path without the leading slash (`alice/laptop`, empty for the root
    /// repository): the `repo` label in metrics, as rest-server writes it.
    pub(crate) fn label(&self) -> String {
        self.segments.join("/")
    }

    /// The repository of a label (see [`RepoPath::label`]: folder names on
    /// disk, already decoded), checked as a request's segments are.
    pub(crate) fn from_label(label: &str) -> Option<RepoPath> {
        if label.is_empty() {
            return Some(RepoPath::default());
        }
        let segments = label
            .split('/')
            .map(|s| check_segment(s.to_string()).filter(|s| !is_reserved_name(s)))
            .collect::<Option<Vec<String>>>()?;
        (segments.len() <= MAX_REPO_DEPTH).then_some(RepoPath { segments })
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("/")?;
        for (i, s) in self.segments.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(s)?;
        }
        Ok(())
    }
}

/// Whether a segment is one of restic's own names (`config`, the object
/// folders): such a segment ends a repository's path.
pub(crate) fn is_reserved_name(segment: &str) -> bool {
    segment == "config" || ObjectType::from_segment(segment).is_some()
}

/// Rejects a repository segment that could walk out of the data directory or
/// collide with the server's own files.
fn check_segment(segment: String) -> Option<String> {
    // SECURITY: an encoded `/` or `\` would split into two path components on
    // disk, `..` would leave the data directory, NUL truncates paths in C, and a
    // leading dot would reach `.htpasswd` or our temp files.
    let forbidden = segment.is_empty()
        || segment.len() > MAX_SEGMENT_BYTES
        || segment.starts_with('.')
        || segment
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control());
    if forbidden {
        return None;
    }
    Some(segment)
}
