//! The `Range` header, as restic uses it: one byte range per request.
//!
//! Forms: `bytes=a-b`, `bytes=a-`, `bytes=-n`. A header that asks for several
//! ranges is answered with the whole object (RFC 9110 lets a server ignore
//! Range); a malformed or unsatisfiable one is 416, as Go's `ServeContent` does.

/// A Range header that cannot be served for an object of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RangeError {
    pub(crate) size: u64,
}

impl std::fmt::Display for RangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "range not satisfiable for size {}", self.size)
    }
}

impl std::error::Error for RangeError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    Full,
    /// `len` bytes from `start`; `len` is at least 1.
    Partial {
        start: u64,
        len: u64,
    },
}

impl ByteRange {
    /// `(offset, length)` to send from an object of `size` bytes.
    pub(crate) fn span(self, size: u64) -> (u64, u64) {
        match self {
            ByteRange::Full => (0, size),
            ByteRange::Partial { start, len } => (start, len),
        }
    }
}

/// What a Range header asks for, before the object's size is known: a store
/// that reads remotely passes it on, a local one resolves it against the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// No Range header, or one with several ranges (answered whole).
    All,
    /// `bytes=a-`
    From(u64),
    /// `bytes=a-b`, with `a <= b`
    Span(u64, u64),
    /// `bytes=-n`, with `n >= 1`
    Suffix(u64),
    /// Malformed: not satisfiable whatever the size.
    Invalid,
}

impl Want {
    pub(crate) fn parse(header: &str) -> Want {
        let Some(spec) = header.trim().strip_prefix("bytes=") else {
            return Want::Invalid;
        };
        if spec.contains(',') {
            return Want::All;
        }
        let Some((first, last)) = spec.trim().split_once('-') else {
            return Want::Invalid;
        };
        let number = |s: &str| -> Option<u64> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let want = if first.trim().is_empty() {
            number(last).filter(|&n| n > 0).map(Want::Suffix)
        } else if last.trim().is_empty() {
            number(first).map(Want::From)
        } else {
            match (number(first), number(last)) {
                (Some(start), Some(end)) if start <= end => Some(Want::Span(start, end)),
                _ => None,
            }
        };
        want.unwrap_or(Want::Invalid)
    }

    /// The bytes to send from an object of `size` bytes.
    pub(crate) fn resolve(self, size: u64) -> Result<ByteRange, RangeError> {
        let unsatisfiable = RangeError { size };
        let last = size.checked_sub(1).ok_or(unsatisfiable);
        let (start, end) = match self {
            Want::All => return Ok(ByteRange::Full),
            Want::Invalid => return Err(unsatisfiable),
            Want::Suffix(n) => (size - n.min(size), last?),
            Want::From(start) => (start, last?),
            Want::Span(start, end) => (start, end.min(last?)),
        };
        if start >= size {
            return Err(unsatisfiable);
        }
        Ok(ByteRange::Partial {
            start,
            len: end - start + 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(header: &str, size: u64) -> Result<ByteRange, RangeError> {
        Want::parse(header).resolve(size)
    }

    fn partial(start: u64, len: u64) -> ByteRange {
        ByteRange::Partial { start, len }
    }

    #[test]
    fn serves_the_three_forms() {
        assert_eq!(parse("bytes=0-9", 100).unwrap(), partial(0, 10));
        assert_eq!(parse("bytes=90-200", 100).unwrap(), partial(90, 10));
        assert_eq!(parse("bytes=95-", 100).unwrap(), partial(95, 5));
        assert_eq!(parse("bytes=-10", 100).unwrap(), partial(90, 10));
        assert_eq!(parse("bytes=-1000", 100).unwrap(), partial(0, 100));
        assert_eq!(parse("bytes=0-0", 1).unwrap(), partial(0, 1));
        assert_eq!(parse("bytes=0-1,5-6", 100).unwrap(), ByteRange::Full);
    }

    #[test]
    fn refuses_what_cannot_be_served() {
        for bad in [
            "bytes=100-",
            "bytes=100-200",
            "bytes=-0",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes=+1-2",
        ] {
            assert!(parse(bad, 100) == Err(RangeError { size: 100 }), "{bad}");
        }
        assert!(parse("bytes=0-", 0).is_err());
    }
}
