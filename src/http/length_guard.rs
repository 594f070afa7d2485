//! Request heads whose `Content-Length` no store could ever hold, turned into
//! a 400 (issue 13, item 5).
//!
//! hyper keeps the two largest `u64` values for its own use (chunked and
//! read-to-close bodies), so `Content-Length: 18446744073709551615` or `…614`
//! fails inside its parser with "message head is too large" and the client gets
//! 431, which names the wrong problem; any other overflowing length is already
//! a 400 ("invalid content-length") there. Nothing of ours runs before hyper's
//! parser, so this scanner watches the head bytes as they are read and, when a
//! `Content-Length` value reaches those two numbers, replaces its last digit
//! with a byte that is not a digit. hyper then refuses the head as an invalid
//! content length: 400, connection closed. Only the digit that tips the value
//! over is touched, in the read that carries it, so nothing is held back.
//!
//! Only heads are scanned: the scanner is told where a head may start (a new
//! connection, or after a response) and stops at the blank line that ends it.

/// hyper's largest allowed body length (`u64::MAX - 2`).
const MAX_LENGTH: u64 = u64::MAX - 2;

const NAME: &[u8] = b"content-length";

/// What replaces the digit: a visible character, so the head stays
/// well-formed and only the length is invalid.
const NOT_A_DIGIT: u8 = b'x';

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a line's start, `matched` bytes of [`NAME`] seen (0 = nothing yet).
    Name { matched: usize },
    /// The whole name seen; a colon must follow at once.
    Colon,
    /// In the value: spaces first, then digits (`value` so far).
    Value { value: u64, digits: bool },
    /// In a line that is not a `Content-Length`, up to its end.
    Skip,
    /// Past the blank line that ends the head: body bytes, not scanned.
    Done,
}

/// Scans one connection's request heads; see the module docs.
#[derive(Debug)]
pub(crate) struct LengthGuard {
    state: State,
}

impl LengthGuard {
    pub(crate) fn new() -> LengthGuard {
        LengthGuard {
            state: State::Name { matched: 0 },
        }
    }

    /// The next bytes read may start a new head.
    pub(crate) fn expect_head(&mut self) {
        self.state = State::Name { matched: 0 };
    }

    /// Scans bytes just read, rewriting a digit that tips a `Content-Length`
    /// over hyper's limit. True when it did.
    pub(crate) fn scan(&mut self, bytes: &mut [u8]) -> bool {
        let mut rewrote = false;
        for byte in bytes.iter_mut() {
            self.state = match self.state {
                State::Done => return rewrote,
                State::Name { matched: 0 } if *byte == b'\r' => State::Name { matched: 0 },
                // A blank line: the head is complete.
                State::Name { matched: 0 } if *byte == b'\n' => State::Done,
                State::Name { matched } if byte.eq_ignore_ascii_case(&NAME[matched]) => {
                    if matched + 1 == NAME.len() {
                        State::Colon
                    } else {
                        State::Name {
                            matched: matched + 1,
                        }
                    }
                }
                State::Colon if *byte == b':' => State::Value {
                    value: 0,
                    digits: false,
                },
                State::Value { digits: false, .. } if *byte == b' ' || *byte == b'\t' => self.state,
                State::Value { value, .. } if byte.is_ascii_digit() => {
                    let next = value
                        .checked_mul(10)
                        .and_then(|v| v.checked_add(u64::from(*byte - b'0')))
                        .filter(|v| *v <= MAX_LENGTH);
                    match next {
                        Some(value) => State::Value {
                            value,
                            digits: true,
                        },
                        None => {
                            *byte = NOT_A_DIGIT;
                            rewrote = true;
                            State::Skip
                        }
                    }
                }
                _ if *byte == b'\n' => State::Name { matched: 0 },
                _ => State::Skip,
            };
        }
        rewrote
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(head: &str) -> (String, bool) {
        let mut bytes = head.as_bytes().to_vec();
        let rewrote = LengthGuard::new().scan(&mut bytes);
        (String::from_utf8(bytes).unwrap(), rewrote)
    }

    #[test]
    fn the_two_reserved_lengths_are_made_invalid() {
        for value in [
            "18446744073709551615",
            "18446744073709551614",
            "018446744073709551614",
        ] {
            let head =
                format!("POST /r/data/x HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n");
            let (out, rewrote) = scanned(&head);
            assert!(rewrote, "{value}");
            assert!(
                out.contains(&format!("{}x\r\n", &value[..value.len() - 1])),
                "{out}"
            );
        }
        let (out, rewrote) =
            scanned("PUT / HTTP/1.1\r\ncontent-LENGTH:\t18446744073709551615 \r\n\r\n");
        assert!(rewrote);
        assert!(out.contains("1844674407370955161x "), "{out}");
    }

    #[test]
    fn other_lengths_and_headers_are_left_alone() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 18446744073709551613\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n",
            "POST / HTTP/1.1\r\nX-Content-Length: 18446744073709551615\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Lengthy: 18446744073709551615\r\n\r\n",
            "POST / HTTP/1.1\r\nX-Note: Content-Length: 18446744073709551615\r\n\r\n",
        ] {
            assert_eq!(scanned(head), (head.to_string(), false));
        }
    }

    #[test]
    fn the_body_is_not_scanned_and_heads_may_arrive_in_pieces() {
        let head =
            "POST / HTTP/1.1\r\nContent-Length: 40\r\n\r\nContent-Length: 18446744073709551615\r\n";
        assert_eq!(scanned(head), (head.to_string(), false));

        let mut guard = LengthGuard::new();
        let mut first = b"POST / HTTP/1.1\r\nConte".to_vec();
        let mut second = b"nt-Length: 1844674407370".to_vec();
        let mut third = b"9551615\r\n\r\n".to_vec();
        assert!(!guard.scan(&mut first));
        assert!(!guard.scan(&mut second));
        assert!(guard.scan(&mut third));
        assert_eq!(third, b"955161x\r\n\r\n");

        // The next request's head is scanned once the guard is told.
        let mut next = b"GET / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n".to_vec();
        assert!(!guard.scan(&mut next));
        guard.expect_head();
        assert!(guard.scan(&mut next));
    }
}
