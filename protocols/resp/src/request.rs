//! Reading commands off the wire, exactly as redis-server 7 does.
//!
//! A Redis server accepts two request shapes: a RESP array of bulk strings (what client
//! libraries send) and an inline line of space-separated words (what telnet users type). Why
//! not `redis-protocol`'s decoder: it decodes any RESP frame and reports its own errors, while a
//! server must accept only arrays of bulk strings, parse inline lines, and answer Redis's exact
//! protocol errors (`invalid bulk length`, `expected '$', got '+'`, ...) before closing the
//! connection. The grammar is therefore written here with `nom`, following
//! `processMultibulkBuffer`/`processInlineBuffer` and `sdssplitargs` of Redis's networking.c.
//! Replies are encoded with `redis-protocol` (see [`crate::reply`]).

use bytes::Bytes;
use nom::branch::alt;
use nom::bytes::complete::{tag, take, take_while, take_while1};
use nom::character::complete::satisfy;
use nom::combinator::{map, value};
use nom::multi::many0;
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// Longest inline line, or multibulk/bulk header line, Redis buffers (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX: usize = 64 * 1024;
/// Most arguments one command may carry. Redis allows up to `INT_MAX`; Cairn refuses counts
/// above this with Redis's `invalid multibulk length`, so a header cannot make it reserve memory.
pub const MAX_ARGS: i64 = 1024 * 1024;

/// What one call to [`parse`] found at the start of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet: read more bytes.
    Incomplete,
    /// A whole request of `consumed` bytes: its arguments (empty for `*0`, `*-1` or a blank line,
    /// which Redis skips without a reply).
    Command { consumed: usize, args: Vec<Bytes> },
    /// A protocol error: Redis replies `-ERR Protocol error: <text>` and closes the connection.
    Error(String),
}

/// Redis's `string2ll`: a strict decimal i64 (no sign but `-`, no leading zeros, no spaces, at
/// most 20 characters). The same rule decides what INCR and friends take as an integer.
pub fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(v).ok()
    }
}

/// Parses the request at the start of `buf`. `max_bulk` is the largest bulk string accepted
/// (Cairn's `--max-request-bytes`; Redis's `proto-max-bulk-len`).
pub fn parse(buf: &[u8], max_bulk: usize) -> Parsed {
    if buf.is_empty() {
        return Parsed::Incomplete;
    }
    if buf[0] == b'*' {
        multibulk(buf, max_bulk)
    } else {
        inline(buf)
    }
}

/// One header line (`*<n>` or `$<n>`) up to `\r`; `None` when the `\r\n` has not arrived.
fn header_line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let cr = buf.iter().position(|&b| b == b'\r')?;
    // Redis wants the `\n` in the buffer too, and skips it without looking at it.
    (buf.len() >= cr + 2).then(|| (&buf[..cr], cr + 2))
}

fn multibulk(buf: &[u8], max_bulk: usize) -> Parsed {
    let Some((line, mut pos)) = header_line(buf) else {
        return if buf.len() > INLINE_MAX {
            Parsed::Error("too big mbulk count string".into())
        } else {
            Parsed::Incomplete
        };
    };
    let count = match string2ll(&line[1..]) {
        Some(n) if n <= MAX_ARGS => n,
        _ => return Parsed::Error("invalid multibulk length".into()),
    };
    if count <= 0 {
        return Parsed::Command { consumed: pos, args: Vec::new() };
    }
    let mut args = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let rest = &buf[pos..];
        let Some((line, used)) = header_line(rest) else {
            return if rest.len() > INLINE_MAX {
                Parsed::Error("too big bulk count string".into())
            } else {
                Parsed::Incomplete
            };
        };
        if line.first() != Some(&b'$') {
            let got = line.first().copied().unwrap_or(b'\r');
            return Parsed::Error(format!("expected '$', got '{}'", got as char));
        }
        let len = match string2ll(&line[1..]) {
            Some(n) if n >= 0 && (n as u64) <= max_bulk as u64 => n as usize,
            _ => return Parsed::Error("invalid bulk length".into()),
        };
        pos += used;
        // The bulk and the two bytes after it (Redis skips them without checking for `\r\n`).
        if buf.len() < pos + len + 2 {
            return Parsed::Incomplete;
        }
        args.push(Bytes::copy_from_slice(&buf[pos..pos + len]));
        pos += len + 2;
    }
    Parsed::Command { consumed: pos, args }
}

fn inline(buf: &[u8]) -> Parsed {
    // A line longer than INLINE_MAX is refused whether or not its `\n` came in the same read,
    // so an inline argument never exceeds the limit (Redis refuses it once 64 KiB are buffered).
    let Some(nl) = buf.iter().take(INLINE_MAX + 1).position(|&b| b == b'\n') else {
        return if buf.len() > INLINE_MAX {
            Parsed::Error("too big inline request".into())
        } else {
            Parsed::Incomplete
        };
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    // Redis splits a C string: a NUL ends the line.
    if let Some(nul) = line.iter().position(|&b| b == 0) {
        line = &line[..nul];
    }
    match split_args(line) {
        Some(args) => Parsed::Command { consumed: nl + 1, args: args.into_iter().map(Bytes::from).collect() },
        None => Parsed::Error("unbalanced quotes in request".into()),
    }
}

/// Redis's `isspace` set, which separates inline arguments.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// `sdssplitargs`: words separated by spaces; `"..."` with C escapes (`\n`, `\xHH`, ...) and
/// `'...'` with `\'`; a closing quote must be followed by a space or the end. `None` when the
/// quotes do not balance.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let spaces = |i| -> IResult<&[u8], ()> { value((), take_while(is_space)).parse(i) };
    let mut args = Vec::new();
    let (mut rest, ()) = spaces(line).ok()?;
    while !rest.is_empty() {
        let (after, arg) = word(rest).ok()?;
        args.push(arg);
        let (after, ()) = spaces(after).ok()?;
        rest = after;
    }
    Some(args)
}

/// Unquoted bytes that end an argument (Redis's inline splitter).
fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// One argument: bare runs and quoted parts glued together (`a"b c"` is `ab c`); after a
/// closing quote only a space or the end may follow.
fn word(i: &[u8]) -> IResult<&[u8], Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = i;
    loop {
        match rest.first() {
            None => return Ok((rest, out)),
            Some(&b) if is_sep(b) => return Ok((rest, out)),
            Some(b'"') | Some(b'\'') => {
                let (r, part) = alt((double_quoted, single_quoted)).parse(rest)?;
                out.extend_from_slice(&part);
                if r.first().is_some_and(|&b| !is_space(b)) {
                    return Err(nom::Err::Failure(nom::error::Error::new(r, nom::error::ErrorKind::Verify)));
                }
                rest = r;
            }
            Some(_) => {
                let (r, part) = take_while1(|b| !is_sep(b) && b != b'"' && b != b'\'').parse(rest)?;
                out.extend_from_slice(part);
                rest = r;
            }
        }
    }
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// `"..."` with `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a` and `\<any>`.
fn double_quoted(i: &[u8]) -> IResult<&[u8], Vec<u8>> {
    let hex = map(
        preceded(tag(&b"\\x"[..]), (satisfy(|c| c.is_ascii_hexdigit()), satisfy(|c| c.is_ascii_hexdigit()))),
        |(a, b)| vec![hex_val(a as u8) * 16 + hex_val(b as u8)],
    );
    let escape = map(preceded(tag(&b"\\"[..]), take(1usize)), |c: &[u8]| {
        vec![match c[0] {
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'b' => 0x08,
            b'a' => 0x07,
            other => other,
        }]
    });
    let plain = map(take_while1(|b| b != b'"' && b != b'\\'), |s: &[u8]| s.to_vec());
    let (rest, _) = tag(&b"\""[..]).parse(i)?;
    let (rest, parts) = many0(alt((hex, escape, plain))).parse(rest)?;
    let (rest, _) = tag(&b"\""[..]).parse(rest).map_err(|e: nom::Err<nom::error::Error<&[u8]>>| match e {
        nom::Err::Error(e) => nom::Err::Failure(e),
        other => other,
    })?;
    Ok((rest, parts.concat()))
}

/// `'...'` where only `\'` is an escape.
fn single_quoted(i: &[u8]) -> IResult<&[u8], Vec<u8>> {
    let escape = value(vec![b'\''], tag(&b"\\'"[..]));
    let backslash = value(vec![b'\\'], tag(&b"\\"[..]));
    let plain = map(take_while1(|b| b != b'\'' && b != b'\\'), |s: &[u8]| s.to_vec());
    let (rest, _) = tag(&b"'"[..]).parse(i)?;
    let (rest, parts) = many0(alt((escape, backslash, plain))).parse(rest)?;
    let (rest, _) = tag(&b"'"[..]).parse(rest).map_err(|e: nom::Err<nom::error::Error<&[u8]>>| match e {
        nom::Err::Error(e) => nom::Err::Failure(e),
        other => other,
    })?;
    Ok((rest, parts.concat()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    #[test]
    fn string2ll_is_strict() {
        assert_eq!(string2ll(b"0"), Some(0));
        assert_eq!(string2ll(b"-12"), Some(-12));
        assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"-0", b"007", b"+1", b" 1", b"1 ", b"9223372036854775808", b"1.0", b"x"] {
            assert_eq!(string2ll(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn multibulk_commands_parse_and_wait_for_more() {
        let req = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
        assert_eq!(parse(req, 100), Parsed::Command { consumed: req.len(), args: args(&["GET", "a"]) });
        for cut in 1..req.len() {
            assert_eq!(parse(&req[..cut], 100), Parsed::Incomplete, "cut at {cut}");
        }
        assert_eq!(parse(b"*0\r\n", 100), Parsed::Command { consumed: 4, args: vec![] });
        assert_eq!(parse(b"*-1\r\n", 100), Parsed::Command { consumed: 5, args: vec![] });
    }

    #[test]
    fn multibulk_errors_are_redis_texts() {
        assert_eq!(parse(b"*x\r\n", 100), Parsed::Error("invalid multibulk length".into()));
        assert_eq!(parse(b"*1\r\n$x\r\n", 100), Parsed::Error("invalid bulk length".into()));
        assert_eq!(parse(b"*1\r\n$101\r\n", 100), Parsed::Error("invalid bulk length".into()));
        assert_eq!(parse(b"*1\r\n+a\r\n", 100), Parsed::Error("expected '$', got '+'".into()));
        assert_eq!(parse(b"*99999999999\r\n", 100), Parsed::Error("invalid multibulk length".into()));
    }

    #[test]
    fn inline_commands_split_like_sdssplitargs() {
        assert_eq!(parse(b"set a b\r\n", 9), Parsed::Command { consumed: 9, args: args(&["set", "a", "b"]) });
        assert_eq!(parse(b"  ping  \n", 9), Parsed::Command { consumed: 9, args: args(&["ping"]) });
        assert_eq!(parse(b"\r\n", 9), Parsed::Command { consumed: 2, args: vec![] });
        assert_eq!(split_args(br#"set "a b" 'c d'"#), Some(vec![b"set".to_vec(), b"a b".to_vec(), b"c d".to_vec()]));
        assert_eq!(split_args(br#""\x41\n""#), Some(vec![b"A\n".to_vec()]));
        assert_eq!(split_args(br#"'it\'s'"#), Some(vec![b"it's".to_vec()]));
        assert_eq!(split_args(br#"a"b c"d"#), None, "a closing quote must be followed by a space");
        assert_eq!(split_args(br#"a"b c" d"#), Some(vec![b"ab c".to_vec(), b"d".to_vec()]));
        assert_eq!(split_args(br#""unbalanced"#), None);
        assert_eq!(split_args(b"'x"), None);
        assert_eq!(parse(b"\"x\r\n", 9), Parsed::Error("unbalanced quotes in request".into()));
    }

    #[test]
    fn inline_lines_are_bounded_however_they_arrive() {
        let mut line = vec![b'a'; INLINE_MAX];
        line.push(b'\n');
        assert!(matches!(parse(&line, 9), Parsed::Command { consumed, .. } if consumed == INLINE_MAX + 1));
        let mut long = vec![b'a'; INLINE_MAX + 1];
        long.push(b'\n');
        assert_eq!(parse(&long, 9), Parsed::Error("too big inline request".into()), "newline in the same read");
        assert_eq!(parse(&long[..INLINE_MAX + 1], 9), Parsed::Error("too big inline request".into()));
    }

    proptest::proptest! {
        /// Random bytes never panic the parser, and a command never claims more than it was given.
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            if let Parsed::Command { consumed, .. } = parse(&data, 1 << 20) {
                proptest::prop_assert!(consumed <= data.len() && consumed > 0);
            }
        }

        /// Any arguments encoded as RESP parse back to themselves.
        #[test]
        fn encoded_commands_round_trip(items in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..8)) {
            let mut req = format!("*{}\r\n", items.len()).into_bytes();
            for it in &items {
                req.extend_from_slice(format!("${}\r\n", it.len()).as_bytes());
                req.extend_from_slice(it);
                req.extend_from_slice(b"\r\n");
            }
            let expect: Vec<Bytes> = items.iter().map(|v| Bytes::copy_from_slice(v)).collect();
            proptest::prop_assert_eq!(parse(&req, 1 << 20), Parsed::Command { consumed: req.len(), args: expect });
        }
    }
}
