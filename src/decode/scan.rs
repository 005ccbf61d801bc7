//! A validating JSON scanner over a page's bytes: what both the split of a
//! page into records and the decoder's walk of each record are made of.
//!
//! It builds no values. It checks the text against JSON's grammar as
//! strictly as serde_json does (strings without raw control characters,
//! escapes that exist, numbers without leading zeros, no trailing commas)
//! and moves past each value, so a caller can take any value as a slice of
//! the page. Strings are searched sixteen bytes at a time (SSE2; eight
//! elsewhere) for their end, an escape or a control character; nothing is
//! unescaped here. [`Scanner::skim_container`] finds where an array or
//! object ends without checking it, for a split whose records the decoder
//! then checks one by one.
//!
//! Nesting deeper than [`MAX_DEPTH`] levels is refused, as serde_json's
//! parser refuses it: it bounds the work, and the stack, of every walk.
//! Lone UTF-16 surrogate escapes pass (serde's raw values pass them too);
//! [`super::shape::lone_surrogate`] is what refuses them where text is kept.

use std::fmt;

/// Deepest nesting of arrays and objects accepted, counted from the page's top.
pub const MAX_DEPTH: usize = 128;

/// Where and why the text is not JSON (small, so a scan's results stay in registers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanError {
    /// Byte offset into the scanned text.
    pub at: usize,
    pub why: Why,
}

/// What was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Control,
    CommaOrBracket,
    CommaOrBrace,
    Key,
    Colon,
    Value,
    Array,
    Object,
    UnicodeEscape,
    Escape,
    Number,
    Fraction,
    Exponent,
    Depth,
    Trailing,
    End,
    EndValue,
    Unterminated,
    KeyNotUnicode,
}

impl Why {
    pub fn message(self) -> &'static str {
        match self {
            Why::Control => "control character in a string (must be escaped)",
            Why::CommaOrBracket => "expected ',' or ']'",
            Why::CommaOrBrace => "expected ',' or '}'",
            Why::Key => "expected a string key",
            Why::Colon => "expected ':' after an object key",
            Why::Value => "expected a value",
            Why::Array => "expected an array",
            Why::Object => "expected an object",
            Why::UnicodeEscape => "invalid \\u escape (four hex digits expected)",
            Why::Escape => "invalid escape in a string",
            Why::Number => "invalid number",
            Why::Fraction => "invalid number (digits expected after '.')",
            Why::Exponent => "invalid number (digits expected in the exponent)",
            Why::Depth => "nesting deeper than 128 levels",
            Why::Trailing => "trailing characters after the JSON value",
            Why::End => "unexpected end of the text",
            Why::EndValue => "unexpected end of the text (a value expected)",
            Why::Unterminated => "unterminated string",
            Why::KeyNotUnicode => "an object key that is not Unicode",
        }
    }
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.why.message(), self.at)
    }
}

impl std::error::Error for ScanError {}

pub type Result<T> = std::result::Result<T, ScanError>;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// A mask with the high bit of the first byte of `w` (little-endian) that
/// is `"`, `\` or below 0x20 set, and possibly of later bytes: the classic
/// "has a zero byte" test, whose false hits lie only above a true one.
#[inline]
fn special_bytes(w: u64) -> u64 {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero(w ^ (ONES * b'"' as u64));
    let backslash = zero(w ^ (ONES * b'\\' as u64));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

/// The position of the first byte at or after `pos` that is `"`, `\\` or
/// below 0x20 (`b.len()` when there is none): sixteen bytes at a time with
/// SSE2 (every x86-64 processor has it), eight at a time elsewhere.
#[inline(always)]
fn find_special(b: &[u8], mut pos: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        while pos + 16 <= b.len() {
            // SAFETY: SSE2 is part of x86-64 (no processor lacks it), and the
            // sixteen bytes loaded at `pos` are inside `b` (checked above);
            // the load has no alignment requirement.
            let mask = unsafe {
                let v = _mm_loadu_si128(b.as_ptr().add(pos) as *const __m128i);
                let below = _mm_set1_epi8(0x1f);
                let control = _mm_cmpeq_epi8(_mm_max_epu8(v, below), below);
                let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
            };
            if mask != 0 {
                return pos + mask.trailing_zeros() as usize;
            }
            pos += 16;
        }
    }
    while pos + 8 <= b.len() {
        let w = u64::from_le_bytes(b[pos..pos + 8].try_into().expect("eight bytes"));
        let m = special_bytes(w);
        if m != 0 {
            return pos + (m.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while let Some(&c) = b.get(pos) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return pos;
        }
        pos += 1;
    }
    pos
}

/// How much of an array's elements [`Scanner::array_items`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Every element is checked to be JSON.
    Full,
    /// Arrays and objects are only skimmed for their ends (scalars are checked).
    Bounds,
}

/// The sixteen bytes at `pos`, if there are sixteen, as three masks (bit
/// `i` for byte `pos + i`): quotes, brackets and braces, backslashes.
#[inline(always)]
fn classify16(b: &[u8], pos: usize) -> Option<(u32, u32, u32)> {
    let chunk: &[u8; 16] = b.get(pos..pos + 16)?.try_into().ok()?;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128,
            _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of x86-64; `chunk` is sixteen readable bytes
        // and the load has no alignment requirement.
        unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr() as *const __m128i);
            let eq = |v: __m128i, c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            // `[`/`{` and `]`/`}` differ only in bit 0x20: fold it away.
            let folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
            let brackets = _mm_or_si128(eq(folded, b'{'), eq(folded, b'}'));
            Some((
                _mm_movemask_epi8(eq(v, b'"')) as u32,
                _mm_movemask_epi8(brackets) as u32,
                _mm_movemask_epi8(eq(v, b'\\')) as u32,
            ))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let (mut quotes, mut brackets, mut escape) = (0u32, 0u32, 0u32);
        for (i, &c) in chunk.iter().enumerate() {
            quotes |= u32::from(c == b'"') << i;
            brackets |= u32::from(matches!(c, b'[' | b'{' | b']' | b'}')) << i;
            escape |= u32::from(c == b'\\') << i;
        }
        Some((quotes, brackets, escape))
    }
}

/// Bit `i` of the result: the parity of bits `0..=i` of `x` (16 bits).
#[inline(always)]
fn prefix_xor(mut x: u32) -> u32 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x & 0xffff
}

/// A cursor over JSON text.
pub struct Scanner<'a> {
    b: &'a [u8],
    pub pos: usize,
    /// Whether a string walked so far held a `\u` escape (only those can
    /// be lone surrogates: text without one needs no search for them).
    pub unicode_escapes: bool,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Self {
        Scanner::at(text, 0)
    }

    /// A scanner over `text` starting at `pos`.
    pub fn at(text: &'a str, pos: usize) -> Self {
        Scanner {
            b: text.as_bytes(),
            pos,
            unicode_escapes: false,
        }
    }

    pub fn error(&self, why: Why) -> ScanError {
        ScanError { at: self.pos, why }
    }

    /// Skip whitespace, returning the next byte.
    #[inline]
    pub fn ws(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.pos) {
            if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                return Some(c);
            }
            self.pos += 1;
        }
        None
    }

    /// Skip whitespace and take `c`, or fail for `why`.
    #[inline]
    pub fn expect(&mut self, c: u8, why: Why) -> Result<()> {
        if self.ws() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(why))
        }
    }

    /// Whitespace to the end of the text, and nothing else.
    pub fn end(&mut self) -> Result<()> {
        match self.ws() {
            None => Ok(()),
            Some(_) => Err(self.error(Why::Trailing)),
        }
    }

    /// The string at the position (its opening quote); the position ends
    /// after its closing quote. Returns whether it holds escapes.
    #[inline(always)]
    pub fn string(&mut self) -> Result<bool> {
        debug_assert_eq!(self.b.get(self.pos), Some(&b'"'));
        // Most strings run to their closing quote without an escape.
        self.pos = find_special(self.b, self.pos + 1);
        if self.b.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            return Ok(false);
        }
        self.string_rest()
    }

    /// The rest of a string from its first escape (or error).
    #[inline(never)]
    fn string_rest(&mut self) -> Result<bool> {
        let mut escaped = false;
        loop {
            match self.b.get(self.pos) {
                None => return Err(self.error(Why::Unterminated)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(_) => return Err(self.error(Why::Control)),
            }
            self.pos = find_special(self.b, self.pos);
        }
    }

    /// The escape at the position (its backslash).
    fn escape(&mut self) -> Result<()> {
        match self.b.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let hex = self.b.get(self.pos + 2..self.pos + 6);
                if hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    self.unicode_escapes = true;
                    self.pos += 6;
                    Ok(())
                } else {
                    Err(self.error(Why::UnicodeEscape))
                }
            }
            _ => Err(self.error(Why::Escape)),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.b.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// The number at the position.
    fn number(&mut self) -> Result<()> {
        if self.b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.b.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error(Why::Number)),
        }
        if self.b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error(Why::Fraction));
            }
        }
        if matches!(self.b.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.b.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error(Why::Exponent));
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error(Why::Value))
        }
    }

    /// Whitespace, then a string (an object's key); returns whether it holds escapes.
    #[inline]
    pub fn key(&mut self) -> Result<bool> {
        if self.ws() != Some(b'"') {
            return Err(self.error(Why::Key));
        }
        self.string()
    }

    /// A scalar at the position; `Ok(false)` when an array or object starts there.
    #[inline]
    pub fn scalar(&mut self) -> Result<bool> {
        match self.b.get(self.pos) {
            Some(b'"') => self.string().map(|_| true),
            Some(b'-' | b'0'..=b'9') => self.number().map(|()| true),
            Some(b't') => self.literal(b"true").map(|()| true),
            Some(b'f') => self.literal(b"false").map(|()| true),
            Some(b'n') => self.literal(b"null").map(|()| true),
            Some(b'[' | b'{') => Ok(false),
            None => Err(self.error(Why::EndValue)),
            Some(_) => Err(self.error(Why::Value)),
        }
    }

    /// Skip whitespace and one whole value, `depth` levels deep already.
    pub fn skip_value(&mut self, depth: usize) -> Result<()> {
        self.ws();
        if self.scalar()? {
            return Ok(());
        }
        // An array or object: a stack of one bit a level (1: object).
        let mut stack = [0u64; MAX_DEPTH / 64];
        let mut level = 0usize;
        loop {
            // At a value that opens a container, or at a scalar.
            match self.b[self.pos] {
                open @ (b'[' | b'{') => {
                    if depth + level >= MAX_DEPTH {
                        return Err(self.error(Why::Depth));
                    }
                    self.pos += 1;
                    let object = open == b'{';
                    let close = if object { b'}' } else { b']' };
                    if self.ws() == Some(close) {
                        self.pos += 1;
                    } else {
                        let (word, bit) = (level / 64, 1u64 << (level % 64));
                        if object {
                            stack[word] |= bit;
                            self.key()?;
                            self.expect(b':', Why::Colon)?;
                        } else {
                            stack[word] &= !bit;
                        }
                        level += 1;
                        self.ws();
                        if !self.scalar()? {
                            continue;
                        }
                    }
                }
                _ => unreachable!("scalar() stops only at a container"),
            }
            // After a value: close containers until one has another value.
            loop {
                if level == 0 {
                    return Ok(());
                }
                let object = stack[(level - 1) / 64] & (1u64 << ((level - 1) % 64)) != 0;
                match self.ws() {
                    Some(b',') => {
                        self.pos += 1;
                        if object {
                            self.key()?;
                            self.expect(b':', Why::Colon)?;
                        }
                        self.ws();
                        if self.scalar()? {
                            continue;
                        }
                        break;
                    }
                    Some(b'}') if object => {
                        self.pos += 1;
                        level -= 1;
                    }
                    Some(b']') if !object => {
                        self.pos += 1;
                        level -= 1;
                    }
                    None => return Err(self.error(Why::End)),
                    Some(_) if object => return Err(self.error(Why::CommaOrBrace)),
                    Some(_) => return Err(self.error(Why::CommaOrBracket)),
                }
            }
        }
    }

    /// The array at the position (after whitespace): each element's byte
    /// range. With [`Check::Bounds`] an element that is an array or object
    /// is only skimmed for its end ([`Scanner::skim_container`]): whoever
    /// takes the ranges must walk each one with a checking walk.
    pub fn array_items(
        &mut self,
        depth: usize,
        check: Check,
    ) -> Result<Vec<std::ops::Range<usize>>> {
        if self.ws() != Some(b'[') {
            return Err(self.error(Why::Array));
        }
        if depth >= MAX_DEPTH {
            return Err(self.error(Why::Depth));
        }
        self.pos += 1;
        let mut items = Vec::new();
        if self.ws() == Some(b']') {
            self.pos += 1;
            return Ok(items);
        }
        loop {
            self.ws();
            let start = self.pos;
            match check {
                Check::Full => self.skip_value(depth + 1)?,
                Check::Bounds => {
                    if !self.scalar()? {
                        self.skim_container(depth + 1)?
                    }
                }
            }
            items.push(start..self.pos);
            match self.ws() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(items);
                }
                None => return Err(self.error(Why::End)),
                Some(_) => return Err(self.error(Why::CommaOrBracket)),
            }
        }
    }

    /// Past the array or object at the position, `depth` levels deep,
    /// finding its end without checking its grammar: brackets and braces
    /// are counted outside strings, strings end at an unescaped quote.
    /// Sixteen bytes are classified at a time and only the quotes and
    /// brackets among them are looked at. For valid JSON the end is the
    /// value's end; for anything else it is somewhere that a checking walk
    /// of the range then refuses (or an error here).
    pub fn skim_container(&mut self, depth: usize) -> Result<()> {
        let b = self.b;
        let mut level = 0usize;
        let mut in_string = false;
        let mut pos = self.pos;
        // One structural byte at `at`: whether the value ends with it.
        let step = |at: usize, in_string: &mut bool, level: &mut usize| -> Result<bool> {
            match b[at] {
                b'"' => *in_string = !*in_string,
                _ if *in_string => {}
                b'[' | b'{' => {
                    *level += 1;
                    if depth + *level > MAX_DEPTH {
                        return Err(ScanError {
                            at,
                            why: Why::Depth,
                        });
                    }
                }
                b']' | b'}' => {
                    *level = level.saturating_sub(1);
                    return Ok(*level == 0);
                }
                _ => {}
            }
            Ok(false)
        };
        loop {
            let Some((quotes, brackets, escape)) = classify16(b, pos) else {
                // The last bytes, one at a time.
                while pos < b.len() {
                    match b[pos] {
                        b'\\' if in_string => pos += 1,
                        b'"' | b'[' | b'{' | b']' | b'}'
                            if step(pos, &mut in_string, &mut level)? =>
                        {
                            self.pos = pos + 1;
                            return Ok(());
                        }
                        _ => {}
                    }
                    pos += 1;
                }
                self.pos = b.len();
                return Err(self.error(Why::End));
            };
            if escape == 0 {
                // Which bytes lie inside strings follows from the quotes
                // alone: only the brackets outside them are looked at.
                let mut inside = prefix_xor(quotes);
                if in_string {
                    inside ^= 0xffff;
                }
                let mut outside = brackets & !inside;
                while outside != 0 {
                    let at = pos + outside.trailing_zeros() as usize;
                    outside &= outside - 1;
                    if step(at, &mut false, &mut level)? {
                        self.pos = at + 1;
                        return Ok(());
                    }
                }
                in_string ^= quotes.count_ones() & 1 == 1;
                pos += 16;
                continue;
            }
            // Up to the block's first backslash, one structural byte at a
            // time; a backslash escapes the byte after it inside a string.
            let upto = escape.trailing_zeros();
            let mut structural = (quotes | brackets) & ((1u32 << upto) - 1);
            while structural != 0 {
                let at = pos + structural.trailing_zeros() as usize;
                structural &= structural - 1;
                if step(at, &mut in_string, &mut level)? {
                    self.pos = at + 1;
                    return Ok(());
                }
            }
            pos += upto as usize + if in_string { 2 } else { 1 };
        }
    }
}

/// Whether `text` is one JSON value and nothing else.
pub fn validate(text: &str) -> Result<()> {
    let mut s = Scanner::new(text);
    s.skip_value(0)?;
    s.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agrees(text: &str) {
        let ours = validate(text).is_ok();
        let serde = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        assert_eq!(ours, serde, "{text:?}: scanner {ours}, serde_json {serde}");
    }

    /// What skimming the elements of `text` finds: the ends the checking
    /// walk finds, or something a check of the ranges refuses.
    fn skim_agrees(text: &str) {
        let items = |check| {
            let mut s = Scanner::new(text);
            s.array_items(0, check).and_then(|r| s.end().map(|()| r))
        };
        match (items(Check::Full), items(Check::Bounds)) {
            (Ok(full), Ok(bounds)) => assert_eq!(full, bounds, "{text:?}"),
            (Ok(_), Err(e)) => panic!("{text:?}: checked, but the skim failed: {e}"),
            (Err(_), Ok(bounds)) => assert!(
                bounds.iter().any(|r| validate(&text[r.clone()]).is_err()),
                "{text:?}: refused by the check, but every skimmed element is JSON"
            ),
            (Err(_), Err(_)) => {}
        }
    }

    #[test]
    fn skimmed_elements_end_where_checked_ones_do() {
        for t in [
            r#"[{"a": "}\"]"}, [1, [2, {"b": "]"}]], "s", 3, {}, []]"#,
            r#"[{"a": "x\\"}, {"b": "\\\""}]"#,
            r#"[{"long": "0123456789abcdef0123456789\"}{", "k": [[[]]]}]"#,
            r#"[{"a": 1]"#,
            r#"[{"a": "unterminated}]"#,
            r#"[{"a": 1}} ]"#,
            r#"[{"a": [1}]]"#,
            r#"[{"a": 1 "b": 2}]"#,
            r#"[{"a": "x"}\]"#,
        ] {
            skim_agrees(t);
        }
        let deep = format!("[{}{}]", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let mut s = Scanner::new(&deep);
        assert_eq!(s.array_items(0, Check::Bounds).unwrap_err().why, Why::Depth);
    }

    #[test]
    fn accepts_and_refuses_what_serde_json_does() {
        for t in [
            "0",
            "-0",
            "01",
            "-",
            "1.",
            "1.5",
            ".5",
            "1e5",
            "1E+5",
            "1e-05",
            "1e",
            "1e+",
            "-1.5e3",
            "+1",
            "true",
            "tru",
            "truex",
            "null",
            "nul",
            "\"\"",
            "\"a\\\"b\"",
            "\"\\u00e9\\ud800\"",
            "\"\\u00g9\"",
            "\"\\x\"",
            "\"a\tb\"",
            "\"a\u{7f}b\u{e9}\"",
            "\"unterminated",
            "\"ends in a backslash\\",
            "[]",
            "[ ]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "[[], {}, [[]], {\"a\": [1, {\"b\": null}]}]",
            "{}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\":1 \"b\":2}",
            "{1: 2}",
            "{\"a\": 1]",
            "[1}",
            " \n\t{\"a\" : [ true , false ] } \r\n",
            "{\"a\": 1} x",
            "[1] [2]",
            "",
            "   ",
            "NaN",
            "[\"a very long string with \\\"escapes\\\" and more than eight bytes\", \"x\"]",
        ] {
            agrees(t);
        }
    }

    #[test]
    fn strings_are_searched_eight_bytes_at_a_time_without_missing_an_end() {
        for len in 0..40 {
            for special in ["\"", "\\n", "\u{1}", "é"] {
                let body: String = "a".repeat(len);
                let t = format!("[\"{body}{special}{body}\", 1]");
                agrees(&t);
            }
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(validate(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(validate(&deep).unwrap_err().why, Why::Depth);
        let very = format!("{}{}", "{\"a\":[".repeat(100_000), "]}".repeat(100_000));
        assert!(validate(&very).is_err());
    }

    #[test]
    fn array_items_are_ranges_of_the_text() {
        let t = r#" [ {"a": [1, 2]} , "x\"y" ,3 ,null] "#;
        let mut s = Scanner::new(t);
        let items: Vec<&str> = s
            .array_items(0, Check::Full)
            .unwrap()
            .into_iter()
            .map(|r| &t[r])
            .collect();
        assert_eq!(items, [r#"{"a": [1, 2]}"#, r#""x\"y""#, "3", "null"]);
        s.end().unwrap();
    }

    proptest::proptest! {
        /// Random edits of valid JSON are accepted or refused exactly as serde_json does.
        #[test]
        fn mutated_json_agrees_with_serde_json(
            seed in proptest::collection::vec(0u8..12, 1..40),
            edits in proptest::collection::vec((0usize..400, 0usize..16), 0..4),
        ) {
            let atoms = ["{\"k\": ", "[", "]", "}", "\"s\\u00e9\"", "1.5e3", "-0", "true", "null", ", ", "\"k\\\"\": ", "\"abcdefghijk\""];
            let mut t: String = seed.iter().map(|&i| atoms[i as usize]).collect();
            let pieces = [",", "]", "}", "[", "{", "\"", "\\", ":", "0", "e", "-", ".", " ", "\u{1}", "n", "x"];
            for (at, p) in edits {
                let mut at = at % (t.len() + 1);
                while !t.is_char_boundary(at) { at -= 1; }
                t.insert_str(at, pieces[p]);
            }
            agrees(&t);
            skim_agrees(&format!("[{t}]"));
            skim_agrees(&format!("[{t}, {t}]"));
            let fixed = serde_json::json!({"a": [1, {"b": "c\u{e9}"}], "d": null, "e": -1.25e-3}).to_string();
            agrees(&fixed);
        }
    }
}
