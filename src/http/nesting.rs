//! Nesting bound for request bodies, checked before any recursive parser runs.
//!
//! JSON parsers recurse once per `[` or `{`. serde_json stops at 128 levels, but the
//! JSON5 parser of the Kaizala dialect has no limit at all, and the key lower-casing
//! after it recurses too: a 100 KB body of `[` overflowed a worker's stack and aborted
//! the whole process. [`check_nesting`] is a flat byte scan (no recursion, no
//! allocation) that both dialects run on every body before parsing it.
//!
//! The scan understands the syntax of JSON and of JSON5 (strings in `"` or `'` with
//! backslash escapes, `//` comments ended by any JSON5 line terminator, `/* */`
//! comments), so brackets inside strings and comments do not count. Wherever it is
//! unsure it ends a comment early, so it can over-count but never under-count. For strict JSON this is still sound: whatever the scan
//! skips as a JSON5 string or comment starts with a byte serde_json refuses, so
//! serde_json stops there before going any deeper than the scan counted.

/// The deepest nesting of arrays and objects a request body may have.
pub const MAX_DEPTH: usize = 64;

/// Fails when `bytes` nests arrays/objects deeper than `max`, naming the limit.
pub fn check_nesting(bytes: &[u8], max: usize) -> Result<(), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Str(u8),
        Escape(u8),
        LineComment,
        BlockComment,
        BlockCommentStar,
    }
    let mut state = State::Code;
    let mut depth = 0usize;
    let mut prev_slash = false;
    for &b in bytes {
        state = match state {
            State::Code => {
                let was_slash = std::mem::replace(&mut prev_slash, false);
                match b {
                    b'"' | b'\'' => State::Str(b),
                    b'/' if was_slash => State::LineComment,
                    b'*' if was_slash => State::BlockComment,
                    b'/' => {
                        prev_slash = true;
                        State::Code
                    }
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > max {
                            return Err(format!("nests arrays and objects deeper than {max} levels"));
                        }
                        State::Code
                    }
                    b']' | b'}' => {
                        depth = depth.saturating_sub(1);
                        State::Code
                    }
                    _ => State::Code,
                }
            }
            State::Str(q) if b == b'\\' => State::Escape(q),
            State::Str(q) if b == q => State::Code,
            State::Str(q) | State::Escape(q) => State::Str(q),
            // JSON5 also ends a line comment at U+2028 and U+2029 (UTF-8 E2 80 A8/A9).
            // Ending it at any E2 byte ends it no later than the parser does: brackets
            // after a `€` in a comment are then counted too, which can only refuse more.
            State::LineComment if b == b'\n' || b == b'\r' || b == 0xE2 => State::Code,
            State::LineComment => State::LineComment,
            State::BlockComment | State::BlockCommentStar if b == b'*' => State::BlockCommentStar,
            State::BlockCommentStar if b == b'/' => State::Code,
            State::BlockComment | State::BlockCommentStar => State::BlockComment,
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn depth_at_the_limit_passes_and_one_more_fails() {
        assert!(check_nesting(nested(MAX_DEPTH).as_bytes(), MAX_DEPTH).is_ok());
        assert!(check_nesting(nested(MAX_DEPTH + 1).as_bytes(), MAX_DEPTH).is_err());
        assert!(check_nesting("[".repeat(100_000).as_bytes(), MAX_DEPTH).is_err());
        let objects = format!("{}1{}", "{\"a\":".repeat(65), "}".repeat(65));
        assert!(check_nesting(objects.as_bytes(), MAX_DEPTH).is_err());
    }

    #[test]
    fn siblings_do_not_add_up() {
        let wide = format!("[{}]", vec!["[[1]]"; 10_000].join(","));
        assert!(check_nesting(wide.as_bytes(), 3).is_ok());
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let s = format!("{{\"a\": \"{}\", b: '{}'}}", "[".repeat(100), "{".repeat(100));
        assert!(check_nesting(s.as_bytes(), 2).is_ok());
        let escaped = format!("[\"\\\"{}\"]", "[".repeat(100));
        assert!(check_nesting(escaped.as_bytes(), 2).is_ok());
        let comments = format!("{{a: 1, // {}\n /* {} */ b: [2]}}", "[".repeat(100), "{".repeat(100));
        assert!(check_nesting(comments.as_bytes(), 2).is_ok());
        // Line comments end where JSON5 ends them, including at U+2028 and U+2029.
        for sep in ["\u{2028}", "\u{2029}"] {
            let hidden = format!("{{a: //{sep}{}}}", "[".repeat(100));
            assert!(check_nesting(hidden.as_bytes(), MAX_DEPTH).is_err(), "{sep:?}");
        }
        // A slash that starts no comment is an ordinary byte.
        assert!(check_nesting(b"[\"a/b\", 1/2, [[3]]]", 3).is_ok());
        assert!(check_nesting(b"[1/[[[3]]]]", 3).is_err());
    }
}
