//! One pass over JSON text that validates it and reports its strings and
//! containers to `Events`, building nothing. It accepts exactly what
//! `serde_json::Value` accepts (UTF-8, escapes and surrogate pairs, numbers
//! within `f64`'s range, at most 127 nested containers), deferring to
//! serde_json itself for the rare tokens where the rules are subtle (strings
//! with `\u` escapes, numbers with exponents or hundreds of digits).

use std::borrow::Cow;

use super::RewriteError;

/// serde_json refuses the 128th nested container.
const MAX_DEPTH: usize = 127;

/// Receives what `scan` reads, in document order.
pub(super) trait Events<'b> {
    /// An object key.
    fn key(&mut self, key: &Str<'b>);
    /// A string value (an array element, an object value, or the document).
    fn string(&mut self, value: &Str<'b>);
    /// A number, `true`, `false` or `null`.
    fn scalar(&mut self);
    /// A container value begins.
    fn open(&mut self, object: bool);
    fn close(&mut self, object: bool);
}

/// Both receive every event.
impl<'b, A: Events<'b>, B: Events<'b>> Events<'b> for (A, B) {
    fn key(&mut self, key: &Str<'b>) {
        self.0.key(key);
        self.1.key(key);
    }

    fn string(&mut self, value: &Str<'b>) {
        self.0.string(value);
        self.1.string(value);
    }

    fn scalar(&mut self) {
        self.0.scalar();
        self.1.scalar();
    }

    fn open(&mut self, object: bool) {
        self.0.open(object);
        self.1.open(object);
    }

    fn close(&mut self, object: bool) {
        self.0.close(object);
        self.1.close(object);
    }
}

/// A string literal: `body[open]` and `body[close]` are its quotes.
pub(super) struct Str<'b> {
    pub open: usize,
    pub close: usize,
    /// The bytes between the quotes, as written.
    pub raw: &'b [u8],
    /// It holds a backslash escape (so `raw` is not its text).
    pub escaped: bool,
    /// Its text, when it holds a `\u` escape (decoded to validate it).
    decoded: Option<String>,
}

impl<'b> Str<'b> {
    /// The string's text.
    pub fn text(&self, body: &'b [u8]) -> Option<Cow<'b, str>> {
        if let Some(decoded) = &self.decoded {
            return Some(Cow::Owned(decoded.clone()));
        }
        if !self.escaped {
            // The whole body is valid UTF-8 and quotes are ASCII.
            return std::str::from_utf8(self.raw).ok().map(Cow::Borrowed);
        }
        serde_json::from_slice(body.get(self.open..=self.close)?)
            .ok()
            .map(Cow::Owned)
    }
}

enum Frame {
    Array,
    Object,
}

/// Reads all of `body` as one JSON value, reporting it to `events`.
pub(super) fn scan<'b>(body: &'b [u8], events: &mut impl Events<'b>) -> Result<(), RewriteError> {
    if let Err(error) = std::str::from_utf8(body) {
        return Err(Cursor {
            body,
            pos: error.valid_up_to(),
        }
        .error("invalid UTF-8"));
    }
    let mut at = Cursor { body, pos: 0 };
    let mut stack = Vec::new();
    loop {
        // A value is expected.
        at.skip_whitespace();
        let mut filled = true;
        match at.peek() {
            Some(open @ (b'{' | b'[')) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(at.error("recursion limit exceeded"));
                }
                let object = open == b'{';
                events.open(object);
                at.pos += 1;
                at.skip_whitespace();
                if at.peek() == Some(if object { b'}' } else { b']' }) {
                    at.pos += 1;
                    events.close(object);
                } else {
                    stack.push(if object { Frame::Object } else { Frame::Array });
                    if object {
                        at.key(events)?;
                    }
                    filled = false;
                }
            }
            Some(b'"') => {
                let value = at.string()?;
                events.string(&value);
            }
            Some(b't') => at.literal(b"true", events)?,
            Some(b'f') => at.literal(b"false", events)?,
            Some(b'n') => at.literal(b"null", events)?,
            Some(b'-' | b'0'..=b'9') => {
                at.number()?;
                events.scalar();
            }
            _ => return Err(at.error("expected a value")),
        }
        if filled && at.after_value(&mut stack, events)? {
            return Ok(());
        }
    }
}

struct Cursor<'b> {
    body: &'b [u8],
    pos: usize,
}

impl<'b> Cursor<'b> {
    fn peek(&self) -> Option<u8> {
        self.body.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.pos += 1;
        }
    }

    /// After a value: closes the containers it ends, and stops before the
    /// next value. `true` when the document is complete.
    fn after_value(&mut self, stack: &mut Vec<Frame>, events: &mut impl Events<'b>) -> Result<bool, RewriteError> {
        loop {
            self.skip_whitespace();
            let next = self.peek();
            match (stack.last(), next) {
                (None, None) => return Ok(true),
                (None, Some(_)) => return Err(self.error("trailing characters")),
                (Some(_), Some(b',')) => {
                    self.pos += 1;
                    if let Some(Frame::Object) = stack.last() {
                        self.skip_whitespace();
                        self.key(events)?;
                    }
                    return Ok(false);
                }
                (Some(Frame::Array), Some(b']')) | (Some(Frame::Object), Some(b'}')) => {
                    self.pos += 1;
                    let object = matches!(stack.pop(), Some(Frame::Object));
                    events.close(object);
                }
                (Some(Frame::Array), _) => return Err(self.error("expected ',' or ']'")),
                (Some(Frame::Object), _) => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self, events: &mut impl Events<'b>) -> Result<(), RewriteError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("key must be a string"));
        }
        let key = self.string()?;
        events.key(&key);
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.error("expected ':'"));
        }
        self.pos += 1;
        Ok(())
    }

    /// A string literal starting at `pos`.
    fn string(&mut self) -> Result<Str<'b>, RewriteError> {
        let open = self.pos;
        let mut i = open + 1;
        let mut escaped = false;
        let mut unicode = false;
        let close = loop {
            i = find_special(self.body, i);
            match self.body.get(i) {
                Some(b'"') => break i,
                Some(b'\\') => {
                    escaped = true;
                    match self.body.get(i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                        Some(b'u')
                            if self
                                .body
                                .get(i + 2..i + 6)
                                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                        {
                            unicode = true;
                            i += 6;
                        }
                        _ => return Err(self.at(i).error("invalid escape")),
                    }
                }
                Some(_) => return Err(self.at(i).error("control character in a string")),
                None => return Err(self.at(i).error("end of input in a string")),
            }
        };
        self.pos = close + 1;
        let literal = self.body.get(open..=close).unwrap_or_default();
        // Surrogate pairs: serde_json's own rules decide.
        let decoded = match unicode {
            true => Some(serde_json::from_slice(literal).map_err(|_| self.at(open).error("invalid unicode escape"))?),
            false => None,
        };
        Ok(Str {
            open,
            close,
            raw: self.body.get(open + 1..close).unwrap_or_default(),
            escaped,
            decoded,
        })
    }

    fn literal(&mut self, word: &[u8], events: &mut impl Events<'b>) -> Result<(), RewriteError> {
        if !self.body.get(self.pos..).unwrap_or_default().starts_with(word) {
            return Err(self.error("expected a value"));
        }
        self.pos += word.len();
        events.scalar();
        Ok(())
    }

    /// A number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(), RewriteError> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.eat(b'.') {
            self.at_least_one_digit()?;
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if exponent {
            self.pos += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            self.at_least_one_digit()?;
        }
        // Only an exponent or some 300 digits can leave f64's range.
        let token = self.body.get(start..self.pos).unwrap_or_default();
        if (exponent || token.len() > 300) && serde_json::from_slice::<serde_json::Number>(token).is_err() {
            return Err(self.at(start).error("number out of range"));
        }
        Ok(())
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        self.pos += usize::from(found);
        found
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn at_least_one_digit(&mut self) -> Result<(), RewriteError> {
        if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err(self.error("invalid number"));
        }
        self.digits();
        Ok(())
    }

    fn at(&self, pos: usize) -> Cursor<'b> {
        Cursor { body: self.body, pos }
    }

    /// `what` at the cursor, with serde_json's line and column.
    fn error(&self, what: &str) -> RewriteError {
        let before = self.body.get(..self.pos).unwrap_or(self.body);
        let line = 1 + memchr::memchr_iter(b'\n', before).count();
        let column = before.len() - memchr::memrchr(b'\n', before).map_or(0, |nl| nl + 1) + 1;
        RewriteError::Json(format!("{what} at line {line} column {column}"))
    }
}

/// The first quote, backslash or control character at or after `from`
/// (`body.len()` if none), eight bytes at a time.
fn find_special(body: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGHS: u64 = ONES << 7;
    let mut i = from;
    while let Some(chunk) = body.get(i..i + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let has = |byte: u8| {
            let x = word ^ (ONES * u64::from(byte));
            x.wrapping_sub(ONES) & !x
        };
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let found = (has(b'"') | has(b'\\') | control) & HIGHS;
        if found != 0 {
            // The lowest flagged byte is a true match (borrows only carry upwards).
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let tail = body.get(i..).unwrap_or_default();
    i + tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(tail.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_special_byte_in_every_lane() {
        for len in 0..20 {
            for special in [b'"', b'\\', b'\n', 0, 0x1f] {
                for at in 0..len {
                    let mut text = vec![b'a'; len];
                    text[at] = special;
                    // A non-ASCII byte and DEL are not special.
                    if at > 0 {
                        text[at - 1] = 0xff;
                    }
                    text.iter_mut().skip(at + 1).for_each(|b| *b = 0x7f);
                    assert_eq!(find_special(&text, 0), at, "{text:?}");
                }
                assert_eq!(find_special(&vec![b'a'; len], 0), len);
            }
        }
    }

    #[test]
    fn errors_say_where() {
        struct Nothing;
        impl Events<'_> for Nothing {
            fn key(&mut self, _: &Str<'_>) {}
            fn string(&mut self, _: &Str<'_>) {}
            fn scalar(&mut self) {}
            fn open(&mut self, _: bool) {}
            fn close(&mut self, _: bool) {}
        }
        let error = scan(b"{\n  \"a\": tru }", &mut Nothing);
        assert_eq!(
            error,
            Err(RewriteError::Json("expected a value at line 2 column 8".into()))
        );
    }
}
